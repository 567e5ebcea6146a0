//go:build !amd64 || noasm || !gc

package simd

func selectAxpy(level) {
	lerpImpl, axpyImpl = lerpGeneric, axpyGeneric
	kernelImpl[kLerp] = levelGeneric.String()
	kernelImpl[kAxpy] = levelGeneric.String()
}
