//go:build !amd64 || noasm || !gc

package simd

func selectSumExp(level) {
	sumExpImpl = sumExpGeneric
	kernelImpl[kSumExp] = levelGeneric.String()
}
