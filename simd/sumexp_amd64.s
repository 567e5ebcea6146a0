//go:build amd64 && !noasm && gc

#include "textflag.h"

// The constants of Go's math.Exp (src/math/exp_amd64.s), four copies each
// (one ymm): log2(e), ln 2 in an upper and a lower part, the reduction
// 1/16, the Taylor coefficients 1/8! ... 1/2!, 1 and 2, and the range
// [−708, 708] in which the result is a normal number.

DATA expconst<>+0(SB)/8, $1.4426950408889634073599246810018920
DATA expconst<>+8(SB)/8, $1.4426950408889634073599246810018920
DATA expconst<>+16(SB)/8, $1.4426950408889634073599246810018920
DATA expconst<>+24(SB)/8, $1.4426950408889634073599246810018920
DATA expconst<>+32(SB)/8, $0.69314718055966295651160180568695068359375
DATA expconst<>+40(SB)/8, $0.69314718055966295651160180568695068359375
DATA expconst<>+48(SB)/8, $0.69314718055966295651160180568695068359375
DATA expconst<>+56(SB)/8, $0.69314718055966295651160180568695068359375
DATA expconst<>+64(SB)/8, $0.28235290563031577122588448175013436025525412068e-12
DATA expconst<>+72(SB)/8, $0.28235290563031577122588448175013436025525412068e-12
DATA expconst<>+80(SB)/8, $0.28235290563031577122588448175013436025525412068e-12
DATA expconst<>+88(SB)/8, $0.28235290563031577122588448175013436025525412068e-12
DATA expconst<>+96(SB)/8, $0.0625
DATA expconst<>+104(SB)/8, $0.0625
DATA expconst<>+112(SB)/8, $0.0625
DATA expconst<>+120(SB)/8, $0.0625
DATA expconst<>+128(SB)/8, $2.4801587301587301587e-5
DATA expconst<>+136(SB)/8, $2.4801587301587301587e-5
DATA expconst<>+144(SB)/8, $2.4801587301587301587e-5
DATA expconst<>+152(SB)/8, $2.4801587301587301587e-5
DATA expconst<>+160(SB)/8, $1.9841269841269841270e-4
DATA expconst<>+168(SB)/8, $1.9841269841269841270e-4
DATA expconst<>+176(SB)/8, $1.9841269841269841270e-4
DATA expconst<>+184(SB)/8, $1.9841269841269841270e-4
DATA expconst<>+192(SB)/8, $1.3888888888888888889e-3
DATA expconst<>+200(SB)/8, $1.3888888888888888889e-3
DATA expconst<>+208(SB)/8, $1.3888888888888888889e-3
DATA expconst<>+216(SB)/8, $1.3888888888888888889e-3
DATA expconst<>+224(SB)/8, $8.3333333333333333333e-3
DATA expconst<>+232(SB)/8, $8.3333333333333333333e-3
DATA expconst<>+240(SB)/8, $8.3333333333333333333e-3
DATA expconst<>+248(SB)/8, $8.3333333333333333333e-3
DATA expconst<>+256(SB)/8, $4.1666666666666666667e-2
DATA expconst<>+264(SB)/8, $4.1666666666666666667e-2
DATA expconst<>+272(SB)/8, $4.1666666666666666667e-2
DATA expconst<>+280(SB)/8, $4.1666666666666666667e-2
DATA expconst<>+288(SB)/8, $1.6666666666666666667e-1
DATA expconst<>+296(SB)/8, $1.6666666666666666667e-1
DATA expconst<>+304(SB)/8, $1.6666666666666666667e-1
DATA expconst<>+312(SB)/8, $1.6666666666666666667e-1
DATA expconst<>+320(SB)/8, $0.5
DATA expconst<>+328(SB)/8, $0.5
DATA expconst<>+336(SB)/8, $0.5
DATA expconst<>+344(SB)/8, $0.5
DATA expconst<>+352(SB)/8, $1.0
DATA expconst<>+360(SB)/8, $1.0
DATA expconst<>+368(SB)/8, $1.0
DATA expconst<>+376(SB)/8, $1.0
DATA expconst<>+384(SB)/8, $2.0
DATA expconst<>+392(SB)/8, $2.0
DATA expconst<>+400(SB)/8, $2.0
DATA expconst<>+408(SB)/8, $2.0
DATA expconst<>+416(SB)/8, $-708.0
DATA expconst<>+424(SB)/8, $-708.0
DATA expconst<>+432(SB)/8, $-708.0
DATA expconst<>+440(SB)/8, $-708.0
DATA expconst<>+448(SB)/8, $708.0
DATA expconst<>+456(SB)/8, $708.0
DATA expconst<>+464(SB)/8, $708.0
DATA expconst<>+472(SB)/8, $708.0
DATA expconst<>+480(SB)/4, $0x3FF
DATA expconst<>+484(SB)/4, $0x3FF
DATA expconst<>+488(SB)/4, $0x3FF
DATA expconst<>+492(SB)/4, $0x3FF
GLOBL expconst<>(SB), RODATA|NOPTR, $496

// func sumExpAVX2(x []float32, m, s float64) (sum float64, n int)
// Requires: AVX2, FMA3. The comments give the instructions of math.Exp's
// FMA path that each step repeats on four lanes.
TEXT ·sumExpAVX2(SB), NOSPLIT, $0-56
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSD m+24(FP), Y15
	MOVSD        s+32(FP), X14
	VMOVUPD      expconst<>+416(SB), Y13
	VMOVUPD      expconst<>+448(SB), Y12
	XORQ         AX, AX

loop:
	LEAQ 4(AX), DX
	CMPQ DX, CX
	JA   done
	// x = float64(v) - m, all four in [-708, 708] (not NaN)
	VCVTPS2PD  (SI)(AX*4), Y0
	VSUBPD     Y15, Y0, Y0
	VCMPPD     $0x1d, Y13, Y0, Y1 // x >= -708, ordered
	VCMPPD     $0x12, Y12, Y0, Y2 // x <= 708, ordered
	VANDPD     Y2, Y1, Y1
	VMOVMSKPD  Y1, DX
	CMPL       DX, $15
	JNE        done
	// MULSD X0, X1 (LOG2E*x); CVTSD2SL X1, BX; CVTSL2SD BX, X1
	VMULPD     expconst<>+0(SB), Y0, Y1
	VCVTPD2DQY Y1, X2
	VCVTDQ2PD  X2, Y1
	// VFNMADD231SD LN2U, X1, X0; VFNMADD231SD LN2L, X1, X0; MULSD 0.0625
	VFNMADD231PD expconst<>+32(SB), Y1, Y0
	VFNMADD231PD expconst<>+64(SB), Y1, Y0
	VMULPD       expconst<>+96(SB), Y0, Y0
	// Taylor series: X1 = X1*X0 + c, from 1/8! down to 1
	VMOVUPD     expconst<>+128(SB), Y1
	VFMADD213PD expconst<>+160(SB), Y0, Y1
	VFMADD213PD expconst<>+192(SB), Y0, Y1
	VFMADD213PD expconst<>+224(SB), Y0, Y1
	VFMADD213PD expconst<>+256(SB), Y0, Y1
	VFMADD213PD expconst<>+288(SB), Y0, Y1
	VFMADD213PD expconst<>+320(SB), Y0, Y1
	VFMADD213PD expconst<>+352(SB), Y0, Y1
	// four squarings of 1 + X0: X0 = X0*(X0 + 2), the last one fused
	VMULPD      Y1, Y0, Y0
	VADDPD      expconst<>+384(SB), Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      expconst<>+384(SB), Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      expconst<>+384(SB), Y0, Y1
	VMULPD      Y1, Y0, Y0
	VADDPD      expconst<>+384(SB), Y0, Y1
	VFMADD213PD expconst<>+352(SB), Y1, Y0
	// ldexp: times 2**BX, BX + 1023 in [1, 2046] (the range check)
	VPADDD      expconst<>+480(SB), X2, X2
	VPMOVZXDQ   X2, Y3
	VPSLLQ      $52, Y3, Y3
	VMULPD      Y3, Y0, Y0
	// s += the four, in order
	VADDSD       X0, X14, X14
	VPERMILPD    $1, X0, X1
	VADDSD       X1, X14, X14
	VEXTRACTF128 $1, Y0, X0
	VADDSD       X0, X14, X14
	VPERMILPD    $1, X0, X1
	VADDSD       X1, X14, X14
	ADDQ         $4, AX
	JMP          loop

done:
	VZEROUPPER
	MOVSD X14, sum+40(FP)
	MOVQ  AX, n+48(FP)
	RET
