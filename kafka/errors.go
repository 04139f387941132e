package kafka

import (
	"errors"
	"io"

	"github.com/IBM/sarama"
)

// A Kind tells apart the Kafka errors a caller answers differently: the
// command line maps each to an exit status.
type Kind uint8

const (
	// Unavailable: brokers unreachable, a topic or partition missing, a
	// broker failing a request at start. Nothing was read, and a later run
	// may find them there.
	Unavailable Kind = iota + 1
	// Refused: the cluster refused what the run asks, and retrying cannot
	// mend it: credentials, TLS spoken to a listener without or the
	// reverse, a group's setting or permission. Also a static member
	// fenced by a newer one with its instance id.
	Refused
)

func (k Kind) String() string {
	switch k {
	case Unavailable:
		return "unavailable"
	case Refused:
		return "refused"
	}
	return "unknown"
}

// ErrInstanceID is what Conn.Config returns, marked Refused, for an
// InstanceID Kafka does not take: one of more than 249 characters, or of
// others than letters, digits, '.', '_' and '-'.
var ErrInstanceID = errors.New("invalid group instance id")

// An Error is a Kafka error of a Kind the caller tells apart.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// unavailable marks err as Unavailable.
func unavailable(err error) error { return &Error{Kind: Unavailable, Err: err} }

// refused marks err as Refused.
func refused(err error) error { return &Error{Kind: Refused, Err: err} }

// connectError says whether a failure to reach the cluster is for the user
// to fix (Refused) or an outage (Unavailable). A broker that answers the
// connection and then closes it at once (EOF) is there: it refused the
// credentials, or speaks TLS to a client that does not, or the reverse.
func connectError(err error) error {
	var mm *MismatchError
	if errors.As(err, &mm) {
		return refused(err)
	}
	if errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return refused(err)
	}
	return unavailable(err)
}
