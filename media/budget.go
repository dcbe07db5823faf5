package media

import "sync"

// Budget is the media memory budget (media.memory_mb, Tuya's
// available_media_memory), shared by the rings and by the sessions, each of
// which holds a retransmission history. Reservations that would exceed it
// fail instead of letting the process grow.
type Budget struct {
	mu    sync.Mutex
	total int
	used  int
}

// NewBudget makes a budget of total bytes.
func NewBudget(total int) *Budget { return &Budget{total: total} }

// Reserve takes n bytes from the budget and reports whether they were there.
func (b *Budget) Reserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n < 0 || b.used+n > b.total {
		return false
	}
	b.used += n
	return true
}

// Release returns n bytes reserved earlier.
func (b *Budget) Release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used = max(0, b.used-n)
}

// Available is what is left to reserve.
func (b *Budget) Available() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total - b.used
}

// Total is the size of the budget.
func (b *Budget) Total() int { return b.total }
