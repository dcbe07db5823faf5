package record

import (
	"errors"
	"io/fs"
	"syscall"
)

// Rule names a reason the recorder stopped; logs, events and the status
// carry it.
type Rule string

// Rules.
const (
	RuleNone         Rule = ""
	RuleCardMissing  Rule = "card_missing"  // the path does not exist (card not inserted or not mounted)
	RuleCardRemoved  Rule = "card_removed"  // the segment being written vanished
	RuleCardReadOnly Rule = "card_readonly" // read-only file system or no permission
	RuleCardFull     Rule = "card_full"     // no space left, even after deleting the oldest segments
	RuleCardIO       Rule = "card_io"       // any other error of the card
)

// classify names the rule an error of the card falls under.
func classify(err error) Rule {
	switch {
	case err == nil:
		return RuleNone
	case errors.Is(err, ErrCardRemoved):
		return RuleCardRemoved
	case errors.Is(err, ErrCardMissing), errors.Is(err, fs.ErrNotExist):
		return RuleCardMissing
	case errors.Is(err, ErrReadOnly), errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return RuleCardReadOnly
	case errors.Is(err, ErrCardFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return RuleCardFull
	}
	return RuleCardIO
}
