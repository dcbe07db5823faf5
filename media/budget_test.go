package media

import (
	"sync"
	"testing"
)

func TestBudget(t *testing.T) {
	b := NewBudget(1000)
	if !b.Reserve(600) || !b.Reserve(400) {
		t.Fatal("reservations within the budget failed")
	}
	if b.Reserve(1) || b.Available() != 0 {
		t.Fatalf("reserved past the budget, available %d", b.Available())
	}
	if b.Reserve(-5) {
		t.Fatal("negative reservation accepted")
	}
	b.Release(400)
	if b.Available() != 400 || !b.Reserve(300) || b.Reserve(101) {
		t.Fatalf("after release: available %d", b.Available())
	}

	// Concurrent reservers never overcommit.
	b = NewBudget(100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Reserve(7) {
				mu.Lock()
				got += 7
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 98 || b.Available() != 2 {
		t.Fatalf("reserved %d, available %d; want 98 and 2", got, b.Available())
	}
}
