package merge_test

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/mka-gguf/mka-gguf/merge"
)

func ExamplePlanMKA() {
	// Similarities between the outputs of 6 blocks: blocks 3, 4 and 5 are
	// nearly interchangeable, block 1 and 2 somewhat.
	adj := []float64{0.40, 0.70, 0.50, 0.95, 0.90} // S(i, i+1)
	sim := mat.NewSymDense(6, nil)
	for i := 0; i < 6; i++ {
		sim.SetSym(i, i, 1)
		for j := i + 1; j < 6; j++ {
			sim.SetSym(i, j, 0.3)
		}
	}
	for i, s := range adj {
		sim.SetSym(i, i+1, s)
	}
	sim.SetSym(3, 5, 0.85)

	plan, err := merge.PlanMKA(sim, 2, merge.MKAOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(plan)

	// Output:
	// mka: 6 -> 4 blocks (2 removed)
	//   1. blk 3 + blk 4 -> 3 (λ=0.95, S=0.95)
	//   2. blk 3 + blk 4 -> 3 (λ=0.85, S=0.85)
	//   layout:
	//     out 3 = 0.807·blk 3 + 0.043·blk 4 + 0.150·blk 5
}

func ExamplePlanPruneAngular() {
	// Angular distances between 5 representations (embeddings and the
	// outputs of 4 blocks); representations 1 and 3 are closest two apart.
	ang := mat.NewDense(5, 5, nil)
	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			if i != j {
				ang.Set(i, j, 0.4)
			}
		}
	}
	ang.Set(1, 3, 0.1)
	plan, _ := merge.PlanPruneAngular(ang, 4, 2)
	fmt.Println(plan)
	// Output:
	// angular: 4 -> 2 blocks (2 removed)
	//   1. drop blk 2 (S=0.90)
	//   2. drop blk 1 (S=0.90)
	//   layout:
	//     out 1 = blk 3
}
