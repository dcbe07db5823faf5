package board

// Rule names why the board integration dropped or refused something: a
// command from the board socket, a reader, a hook run. The names are what
// the warn log's rule= attribute and a reply's rule field carry.
type Rule string

// Rules of the board socket and the exec hook.
const (
	RuleMalformed      Rule = "malformed"
	RuleUnknownCommand Rule = "unknown_command"
	RuleBadValue       Rule = "bad_value"
	RuleLineTooLong    Rule = "line_too_long"
	RuleTooManyReaders Rule = "too_many_readers"
	RuleHookQueueFull  Rule = "hook_queue_full"
	RuleHookTimeout    Rule = "hook_timeout"
)
