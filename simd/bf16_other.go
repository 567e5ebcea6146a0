//go:build !amd64 || noasm || !gc

package simd

func selectBF16(level) {
	bf16ToF32Impl, f32ToBF16Impl = bf16ToF32Generic, f32ToBF16Generic
	kernelImpl[kBF16ToF32] = levelGeneric.String()
	kernelImpl[kF32ToBF16] = levelGeneric.String()
}
