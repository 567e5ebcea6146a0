//go:build amd64 && !noasm && gc

#include "textflag.h"

// TAILMASK sets K1 to the low CX bits (0 < CX < 16).
#define TAILMASK \
	MOVL  $1, AX  \
	SHLL  CX, AX  \
	DECL  AX      \
	KMOVW AX, K1

// REDUCEY adds the four ymm accumulators Y0..Y3 and sums Y0's lanes into
// the low lane of X0.
#define REDUCEY \
	VADDPS       Y1, Y0, Y0 \
	VADDPS       Y3, Y2, Y2 \
	VADDPS       Y2, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS       X1, X0, X0 \
	VMOVHLPS     X0, X0, X1 \
	VADDPS       X1, X0, X0 \
	VMOVSHDUP    X0, X1     \
	VADDSS       X1, X0, X0

// REDUCEZ adds the four zmm accumulators Z0..Z3 and sums Z0's lanes into
// the low lane of X0.
#define REDUCEZ \
	VADDPS        Z1, Z0, Z0 \
	VADDPS        Z3, Z2, Z2 \
	VADDPS        Z2, Z0, Z0 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS        Y1, Y0, Y0 \
	VEXTRACTF128  $1, Y0, X1 \
	VADDPS        X1, X0, X0 \
	VMOVHLPS      X0, X0, X1 \
	VADDPS        X1, X0, X0 \
	VMOVSHDUP     X0, X1     \
	VADDSS        X1, X0, X0

// func dotAVX2(a, b []float32) float32
// Requires: AVX2, FMA3; len(a) == len(b), len(a)%8 == 0.
TEXT ·dotAVX2(SB), NOSPLIT, $0-52
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ   $3, CX

loop4:
	CMPQ CX, $4
	JB   loop1
	VMOVUPS     0(SI), Y4
	VFMADD231PS 0(DX), Y4, Y0
	VMOVUPS     32(SI), Y5
	VFMADD231PS 32(DX), Y5, Y1
	VMOVUPS     64(SI), Y6
	VFMADD231PS 64(DX), Y6, Y2
	VMOVUPS     96(SI), Y7
	VFMADD231PS 96(DX), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DX
	SUBQ $4, CX
	JMP  loop4

loop1:
	TESTQ CX, CX
	JZ    done
	VMOVUPS     0(SI), Y4
	VFMADD231PS 0(DX), Y4, Y0
	ADDQ  $32, SI
	ADDQ  $32, DX
	DECQ  CX
	JMP   loop1

done:
	REDUCEY
	VMOVSS X0, ret+48(FP)
	VZEROUPPER
	RET

// func sqDistAVX2(a, b []float32) float32
// Requires: AVX2, FMA3; len(a) == len(b), len(a)%8 == 0.
TEXT ·sqDistAVX2(SB), NOSPLIT, $0-52
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ   $3, CX

loop4:
	CMPQ CX, $4
	JB   loop1
	VMOVUPS     0(SI), Y4
	VSUBPS      0(DX), Y4, Y4
	VFMADD231PS Y4, Y4, Y0
	VMOVUPS     32(SI), Y5
	VSUBPS      32(DX), Y5, Y5
	VFMADD231PS Y5, Y5, Y1
	VMOVUPS     64(SI), Y6
	VSUBPS      64(DX), Y6, Y6
	VFMADD231PS Y6, Y6, Y2
	VMOVUPS     96(SI), Y7
	VSUBPS      96(DX), Y7, Y7
	VFMADD231PS Y7, Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DX
	SUBQ $4, CX
	JMP  loop4

loop1:
	TESTQ CX, CX
	JZ    done
	VMOVUPS     0(SI), Y4
	VSUBPS      0(DX), Y4, Y4
	VFMADD231PS Y4, Y4, Y0
	ADDQ  $32, SI
	ADDQ  $32, DX
	DECQ  CX
	JMP   loop1

done:
	REDUCEY
	VMOVSS X0, ret+48(FP)
	VZEROUPPER
	RET

// func dotAVX512(a, b []float32) float32
// Requires: AVX512F, AVX512BW, AVX512VL; len(a) == len(b).
TEXT ·dotAVX512(SB), NOSPLIT, $0-52
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3

loop64:
	CMPQ CX, $64
	JB   loop16
	VMOVUPS     0(SI), Z4
	VFMADD231PS 0(DX), Z4, Z0
	VMOVUPS     64(SI), Z5
	VFMADD231PS 64(DX), Z5, Z1
	VMOVUPS     128(SI), Z6
	VFMADD231PS 128(DX), Z6, Z2
	VMOVUPS     192(SI), Z7
	VFMADD231PS 192(DX), Z7, Z3
	ADDQ $256, SI
	ADDQ $256, DX
	SUBQ $64, CX
	JMP  loop64

loop16:
	CMPQ CX, $16
	JB   tail
	VMOVUPS     0(SI), Z4
	VFMADD231PS 0(DX), Z4, Z0
	ADDQ $64, SI
	ADDQ $64, DX
	SUBQ $16, CX
	JMP  loop16

tail:
	TESTQ     CX, CX
	JZ        done
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	VFMADD231PS Z5, Z4, Z1

done:
	REDUCEZ
	VMOVSS X0, ret+48(FP)
	VZEROUPPER
	RET

// func sqDistAVX512(a, b []float32) float32
// Requires: AVX512F, AVX512BW, AVX512VL; len(a) == len(b).
TEXT ·sqDistAVX512(SB), NOSPLIT, $0-52
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3

loop64:
	CMPQ CX, $64
	JB   loop16
	VMOVUPS     0(SI), Z4
	VSUBPS      0(DX), Z4, Z4
	VFMADD231PS Z4, Z4, Z0
	VMOVUPS     64(SI), Z5
	VSUBPS      64(DX), Z5, Z5
	VFMADD231PS Z5, Z5, Z1
	VMOVUPS     128(SI), Z6
	VSUBPS      128(DX), Z6, Z6
	VFMADD231PS Z6, Z6, Z2
	VMOVUPS     192(SI), Z7
	VSUBPS      192(DX), Z7, Z7
	VFMADD231PS Z7, Z7, Z3
	ADDQ $256, SI
	ADDQ $256, DX
	SUBQ $64, CX
	JMP  loop64

loop16:
	CMPQ CX, $16
	JB   tail
	VMOVUPS     0(SI), Z4
	VSUBPS      0(DX), Z4, Z4
	VFMADD231PS Z4, Z4, Z0
	ADDQ $64, SI
	ADDQ $64, DX
	SUBQ $16, CX
	JMP  loop16

tail:
	TESTQ     CX, CX
	JZ        done
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	VSUBPS      Z5, Z4, Z4
	VFMADD231PS Z4, Z4, Z1

done:
	REDUCEZ
	VMOVSS X0, ret+48(FP)
	VZEROUPPER
	RET
