//go:build amd64 && !noasm && gc

#include "textflag.h"

// TAILMASK sets K1 to the low CX bits (0 < CX < 16).
#define TAILMASK \
	MOVL  $1, AX  \
	SHLL  CX, AX  \
	DECL  AX      \
	KMOVW AX, K1

// func lerpAVX2(dst, a, b []float32, lambda, mu float32)
// Requires: AVX2; len(dst) == len(a) == len(b), len(dst)%8 == 0.
TEXT ·lerpAVX2(SB), NOSPLIT, $0-80
	MOVQ         dst_base+0(FP), DI
	MOVQ         dst_len+8(FP), CX
	MOVQ         a_base+24(FP), SI
	MOVQ         b_base+48(FP), DX
	VBROADCASTSS lambda+72(FP), Y14
	VBROADCASTSS mu+76(FP), Y15
	SHRQ         $3, CX

loop4:
	CMPQ   CX, $4
	JB     loop1
	VMULPS (SI), Y14, Y0
	VMULPS 32(SI), Y14, Y1
	VMULPS 64(SI), Y14, Y2
	VMULPS 96(SI), Y14, Y3
	VMULPS (DX), Y15, Y4
	VMULPS 32(DX), Y15, Y5
	VMULPS 64(DX), Y15, Y6
	VMULPS 96(DX), Y15, Y7
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ   $128, SI
	ADDQ   $128, DX
	ADDQ   $128, DI
	SUBQ   $4, CX
	JMP    loop4

loop1:
	TESTQ   CX, CX
	JZ      done
	VMULPS  (SI), Y14, Y0
	VMULPS  (DX), Y15, Y4
	VADDPS  Y4, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	DECQ    CX
	JMP     loop1

done:
	VZEROUPPER
	RET

// func axpyAVX2(dst []float32, alpha float32, x []float32)
// Requires: AVX2; len(dst) == len(x), len(dst)%8 == 0.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-56
	MOVQ         dst_base+0(FP), DI
	MOVQ         dst_len+8(FP), CX
	VBROADCASTSS alpha+24(FP), Y15
	MOVQ         x_base+32(FP), SI
	SHRQ         $3, CX

loop4:
	CMPQ    CX, $4
	JB      loop1
	VMULPS  (SI), Y15, Y0
	VMULPS  32(SI), Y15, Y1
	VMULPS  64(SI), Y15, Y2
	VMULPS  96(SI), Y15, Y3
	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VADDPS  64(DI), Y2, Y2
	VADDPS  96(DI), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $4, CX
	JMP     loop4

loop1:
	TESTQ   CX, CX
	JZ      done
	VMULPS  (SI), Y15, Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JMP     loop1

done:
	VZEROUPPER
	RET

// func lerpAVX512(dst, a, b []float32, lambda, mu float32)
// Requires: AVX512F, AVX512BW, AVX512VL; len(dst) == len(a) == len(b).
TEXT ·lerpAVX512(SB), NOSPLIT, $0-80
	MOVQ         dst_base+0(FP), DI
	MOVQ         dst_len+8(FP), CX
	MOVQ         a_base+24(FP), SI
	MOVQ         b_base+48(FP), DX
	VBROADCASTSS lambda+72(FP), Z14
	VBROADCASTSS mu+76(FP), Z15

loop64:
	CMPQ    CX, $64
	JB      loop16
	VMULPS  (SI), Z14, Z0
	VMULPS  64(SI), Z14, Z1
	VMULPS  128(SI), Z14, Z2
	VMULPS  192(SI), Z14, Z3
	VMULPS  (DX), Z15, Z4
	VMULPS  64(DX), Z15, Z5
	VMULPS  128(DX), Z15, Z6
	VMULPS  192(DX), Z15, Z7
	VADDPS  Z4, Z0, Z0
	VADDPS  Z5, Z1, Z1
	VADDPS  Z6, Z2, Z2
	VADDPS  Z7, Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ    $256, SI
	ADDQ    $256, DX
	ADDQ    $256, DI
	SUBQ    $64, CX
	JMP     loop64

loop16:
	CMPQ    CX, $16
	JB      tail
	VMULPS  (SI), Z14, Z0
	VMULPS  (DX), Z15, Z4
	VADDPS  Z4, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DX
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     loop16

tail:
	TESTQ     CX, CX
	JZ        done
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z4
	VMULPS    Z0, Z14, Z0
	VMULPS    Z4, Z15, Z4
	VADDPS    Z4, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

done:
	VZEROUPPER
	RET

// func axpyAVX512(dst []float32, alpha float32, x []float32)
// Requires: AVX512F, AVX512BW, AVX512VL; len(dst) == len(x).
TEXT ·axpyAVX512(SB), NOSPLIT, $0-56
	MOVQ         dst_base+0(FP), DI
	MOVQ         dst_len+8(FP), CX
	VBROADCASTSS alpha+24(FP), Z15
	MOVQ         x_base+32(FP), SI

loop64:
	CMPQ    CX, $64
	JB      loop16
	VMULPS  (SI), Z15, Z0
	VMULPS  64(SI), Z15, Z1
	VMULPS  128(SI), Z15, Z2
	VMULPS  192(SI), Z15, Z3
	VADDPS  (DI), Z0, Z0
	VADDPS  64(DI), Z1, Z1
	VADDPS  128(DI), Z2, Z2
	VADDPS  192(DI), Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ    $256, SI
	ADDQ    $256, DI
	SUBQ    $64, CX
	JMP     loop64

loop16:
	CMPQ    CX, $16
	JB      tail
	VMULPS  (SI), Z15, Z0
	VADDPS  (DI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     loop16

tail:
	TESTQ     CX, CX
	JZ        done
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DI), K1, Z1
	VMULPS    Z0, Z15, Z0
	VADDPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

done:
	VZEROUPPER
	RET
