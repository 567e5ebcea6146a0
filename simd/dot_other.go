//go:build !amd64 || noasm || !gc

package simd

func selectDot(level) {
	dotImpl, sqDistImpl = dotGeneric, sqDistGeneric
	kernelImpl[kDot] = levelGeneric.String()
	kernelImpl[kSqDist] = levelGeneric.String()
}
