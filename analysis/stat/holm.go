package stat

import "slices"

// Holm returns the p-values adjusted by Holm's step-down procedure, which
// controls the family-wise error rate under any dependence between the
// tests (Holm, "A simple sequentially rejective multiple test procedure",
// Scand. J. Statist. 6, 1979; R's p.adjust(p, "holm")):
//
//	p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))
//
// where p_(1) ≤ … ≤ p_(m) are the sorted p-values. The result is in the
// order of ps.
func Holm(ps []float64) []float64 {
	m := len(ps)
	order := make([]int, m)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ps[a] < ps[b]:
			return -1
		case ps[a] > ps[b]:
			return 1
		}
		return 0
	})
	out := make([]float64, m)
	running := 0.0
	for j, i := range order {
		q := min(1, float64(m-j)*ps[i])
		running = max(running, q)
		out[i] = running
	}
	return out
}
