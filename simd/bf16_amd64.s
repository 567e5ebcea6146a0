//go:build amd64 && !noasm && gc

#include "textflag.h"

// Constants of the ggml float32 -> bfloat16 rule.
DATA bf16c<>+0(SB)/4, $0x7fffffff  // abs mask
DATA bf16c<>+4(SB)/4, $0x7f800000  // +Inf: |x| above it is NaN
DATA bf16c<>+8(SB)/4, $1           // round-to-even bit
DATA bf16c<>+12(SB)/4, $0x7fff     // rounding bias
DATA bf16c<>+16(SB)/4, $0x40       // quiet bit of a bfloat16 NaN
GLOBL bf16c<>(SB), RODATA|NOPTR, $20

// TAILMASK sets K1 to the low CX bits (0 < CX < 16).
#define TAILMASK \
	MOVL  $1, AX  \
	SHLL  CX, AX  \
	DECL  AX      \
	KMOVW AX, K1

// LOADCONSTS broadcasts the constants into R10..R14 (Y or Z registers).
#define LOADCONSTS(R10, R11, R12, R13, R14) \
	VPBROADCASTD bf16c<>+0(SB), R10  \
	VPBROADCASTD bf16c<>+4(SB), R11  \
	VPBROADCASTD bf16c<>+8(SB), R12  \
	VPBROADCASTD bf16c<>+12(SB), R13 \
	VPBROADCASTD bf16c<>+16(SB), R14

// BF16Y turns the 8 float32 in X into 8 bfloat16 in the low word of each
// dword of X, using T1..T3 as scratch and the constants in Y10..Y14:
// T1 = NaN lanes (|x| > +Inf), T2 = x>>16, X = (x + 0x7fff + (T2&1)) >> 16,
// then NaN lanes take T2|0x40.
#define BF16Y(X, T1, T2, T3) \
	VPAND     Y10, X, T1  \
	VPCMPGTD  Y11, T1, T1 \
	VPSRLD    $16, X, T2  \
	VPAND     Y12, T2, T3 \
	VPADDD    Y13, X, X   \
	VPADDD    T3, X, X    \
	VPSRLD    $16, X, X   \
	VPOR      Y14, T2, T2 \
	VPBLENDVB T1, T2, X, X

// BF16Z is BF16Y for 16 float32 in a zmm register, with the NaN lanes in K2
// and the constants in Z10..Z14; NaN lanes are fixed by a merge-masked VPORD.
#define BF16Z(X, T2, T3) \
	VPANDD   Z10, X, T2     \
	VPCMPGTD Z11, T2, K2    \
	VPSRLD   $16, X, T2     \
	VPANDD   Z12, T2, T3    \
	VPADDD   Z13, X, X      \
	VPADDD   T3, X, X       \
	VPSRLD   $16, X, X      \
	VPORD    Z14, T2, K2, X

// func bf16ToF32AVX2(dst []float32, src []uint16)
// Requires: AVX2; len(dst) == len(src), len(dst)%8 == 0.
TEXT ·bf16ToF32AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	SHRQ $3, CX

loop4:
	CMPQ      CX, $4
	JB        loop1
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPMOVZXWD 32(SI), Y2
	VPMOVZXWD 48(SI), Y3
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VPSLLD    $16, Y2, Y2
	VPSLLD    $16, Y3, Y3
	VMOVDQU   Y0, (DI)
	VMOVDQU   Y1, 32(DI)
	VMOVDQU   Y2, 64(DI)
	VMOVDQU   Y3, 96(DI)
	ADDQ      $64, SI
	ADDQ      $128, DI
	SUBQ      $4, CX
	JMP       loop4

loop1:
	TESTQ     CX, CX
	JZ        done
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JMP       loop1

done:
	VZEROUPPER
	RET

// func f32ToBF16AVX2(dst []uint16, src []float32)
// Requires: AVX2; len(dst) == len(src), len(dst)%16 == 0.
TEXT ·f32ToBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	SHRQ $4, CX
	JZ   done
	LOADCONSTS(Y10, Y11, Y12, Y13, Y14)

loop:
	VMOVDQU   (SI), Y0
	VMOVDQU   32(SI), Y1
	BF16Y(Y0, Y2, Y3, Y4)
	BF16Y(Y1, Y5, Y6, Y7)
	VPACKUSDW Y1, Y0, Y0     // lanes: 0-3 8-11 | 4-7 12-15
	VPERMQ    $0xd8, Y0, Y0  // 0-3 4-7 8-11 12-15
	VMOVDQU   Y0, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop

done:
	VZEROUPPER
	RET

// func bf16ToF32AVX512(dst []float32, src []uint16)
// Requires: AVX512F, AVX512BW, AVX512VL; len(dst) == len(src).
TEXT ·bf16ToF32AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI

loop64:
	CMPQ      CX, $64
	JB        loop16
	VPMOVZXWD (SI), Z0
	VPMOVZXWD 32(SI), Z1
	VPMOVZXWD 64(SI), Z2
	VPMOVZXWD 96(SI), Z3
	VPSLLD    $16, Z0, Z0
	VPSLLD    $16, Z1, Z1
	VPSLLD    $16, Z2, Z2
	VPSLLD    $16, Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	ADDQ      $128, SI
	ADDQ      $256, DI
	SUBQ      $64, CX
	JMP       loop64

loop16:
	CMPQ      CX, $16
	JB        tail
	VPMOVZXWD (SI), Z0
	VPSLLD    $16, Z0, Z0
	VMOVDQU32 Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JMP       loop16

tail:
	TESTQ       CX, CX
	JZ          done
	TAILMASK
	VMOVDQU16.Z (SI), K1, Y0
	VPMOVZXWD   Y0, Z0
	VPSLLD      $16, Z0, Z0
	VMOVDQU32   Z0, K1, (DI)

done:
	VZEROUPPER
	RET

// func f32ToBF16AVX512(dst []uint16, src []float32)
// Requires: AVX512F, AVX512BW, AVX512VL; len(dst) == len(src).
TEXT ·f32ToBF16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LOADCONSTS(Z10, Z11, Z12, Z13, Z14)

loop32:
	CMPQ      CX, $32
	JB        loop16
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	BF16Z(Z0, Z2, Z3)
	BF16Z(Z1, Z4, Z5)
	VPMOVDW   Z0, (DI)
	VPMOVDW   Z1, 32(DI)
	ADDQ      $128, SI
	ADDQ      $64, DI
	SUBQ      $32, CX
	JMP       loop32

loop16:
	CMPQ      CX, $16
	JB        tail
	VMOVDQU32 (SI), Z0
	BF16Z(Z0, Z2, Z3)
	VPMOVDW   Z0, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JMP       loop16

tail:
	TESTQ       CX, CX
	JZ          done
	TAILMASK
	VMOVDQU32.Z (SI), K1, Z0
	BF16Z(Z0, Z2, Z3)
	VPMOVDW     Z0, K1, (DI)

done:
	VZEROUPPER
	RET
