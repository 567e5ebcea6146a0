//go:build !amd64 || noasm || !gc

package simd

func selectHalf(level) {
	f16ToF32Impl, f32ToF16Impl = f16ToF32Generic, f32ToF16Generic
	kernelImpl[kF16ToF32] = levelGeneric.String()
	kernelImpl[kF32ToF16] = levelGeneric.String()
}
