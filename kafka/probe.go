// What a broker's listener speaks, found out when a connection failed: a
// client speaking TLS to a plaintext port, SASL to a listener without, or
// the reverse, is told so rather than "run out of available brokers".

package kafka

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Mismatch is what a broker's listener speaks that the connection's
// settings do not, or the reverse.
type Mismatch uint8

const (
	ListenerTLS      Mismatch = iota + 1 // the listener speaks TLS, the client does not
	ListenerNoTLS                        // the client speaks TLS, the listener does not
	ListenerSASL                         // the listener wants SASL, the client has none
	ListenerNoSASL                       // the client speaks SASL, the listener takes none
	MechanismMissing                     // the listener does not offer the client's mechanism
)

// A MismatchError is a connection refused because its settings do not
// match the broker's listener.
type MismatchError struct {
	Broker     string
	Mismatch   Mismatch
	Mechanism  string   // the client's, for MechanismMissing
	Mechanisms []string // what the listener offers, with SASL
	Err        error    // the failure that led to the probe
}

func (e *MismatchError) Error() string {
	var why string
	switch e.Mismatch {
	case ListenerTLS:
		why = "the listener speaks TLS, and the client does not"
	case ListenerNoTLS:
		why = "the client speaks TLS, and the listener does not"
	case ListenerSASL:
		why = "the listener wants SASL (" + strings.Join(e.Mechanisms, ", ") + "), and the client has none"
	case ListenerNoSASL:
		why = "the client speaks SASL, and the listener takes none"
	case MechanismMissing:
		why = "the listener does not offer SASL mechanism " + e.Mechanism + " (it offers " + strings.Join(e.Mechanisms, ", ") + ")"
	}
	return fmt.Sprintf("kafka: connect to %s: %s", e.Broker, why)
}

func (e *MismatchError) Unwrap() error { return e.Err }

// listener is what a probe found a broker's listener to speak.
type listener struct {
	tls        bool
	sasl       bool
	mechanisms []string // with sasl
}

// mismatch probes the first broker that accepts a connection for what its
// listener speaks, and returns how c differs from it, or nil: no broker
// answered the probe, or it found no difference. err is the failure that
// led to it.
func (c *Conn) mismatch(err error) *MismatchError {
	timeout := min(c.DialTimeout, 3*time.Second)
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	mech := strings.ToUpper(c.SASL)
	for _, b := range c.Brokers {
		l, perr := probeListener(b, timeout)
		if perr != nil {
			continue
		}
		e := &MismatchError{Broker: b, Mechanism: mech, Mechanisms: l.mechanisms, Err: err}
		useTLS := c.TLS || c.CAFile != "" || c.CertFile != ""
		switch {
		case l.tls && !useTLS:
			e.Mismatch = ListenerTLS
		case !l.tls && useTLS:
			e.Mismatch = ListenerNoTLS
		case l.sasl && c.SASL == "":
			e.Mismatch = ListenerSASL
		case !l.sasl && c.SASL != "":
			e.Mismatch = ListenerNoSASL
		case l.sasl && len(l.mechanisms) > 0 && !slices.Contains(l.mechanisms, mech):
			e.Mismatch = MechanismMissing
		default:
			return nil
		}
		return e
	}
	return nil
}

// probeListener finds out whether the listener at addr speaks TLS, and
// whether it wants a SASL handshake: asked for a mechanism no broker has,
// a SASL listener names those it offers, and one without SASL answers
// ILLEGAL_SASL_STATE. (kfake without SASL answers as one with.)
func probeListener(addr string, timeout time.Duration) (listener, error) {
	var l listener
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return l, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	host, _, _ := net.SplitHostPort(addr)
	// Only to learn what the listener speaks: the certificate is checked
	// by the connection itself.
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: host})
	herr := tc.Handshake()
	var alert tls.AlertError
	switch {
	case herr == nil:
		l.tls = true
	case errors.As(herr, &alert) || strings.Contains(herr.Error(), "remote error: tls"):
		// A TLS listener refusing this client (no certificate): it
		// speaks TLS, and the SASL question waits for a client it takes.
		conn.Close()
		return listener{tls: true}, nil
	}
	conn.Close()
	if l.tls {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: host})
	} else {
		conn, err = net.DialTimeout("tcp", addr, timeout)
	}
	if err != nil {
		return l, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	resp, err := saslHandshake(conn, "BATCHPIPE-PROBE")
	if err != nil {
		return l, err
	}
	if resp.ErrorCode == kerr.UnsupportedSaslMechanism.Code {
		l.sasl, l.mechanisms = true, resp.SupportedMechanisms
	}
	return l, nil
}

// saslHandshake sends a SaslHandshake request (v1) for mech on conn and
// reads its response. A listener without SASL answers it with
// ILLEGAL_SASL_STATE.
func saslHandshake(conn io.ReadWriter, mech string) (*kmsg.SASLHandshakeResponse, error) {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version = 1
	req.Mechanism = mech
	const clientID = "batchpipe-probe"
	msg := make([]byte, 4, 64)
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.Version))
	msg = binary.BigEndian.AppendUint32(msg, 1) // correlation id
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(clientID)))
	msg = append(msg, clientID...)
	msg = req.AppendTo(msg)
	binary.BigEndian.PutUint32(msg, uint32(len(msg)-4))
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<16 {
		return nil, fmt.Errorf("kafka: probe: a response of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = 1
	if err := resp.ReadFrom(body[4:]); err != nil { // past the correlation id
		return nil, err
	}
	return resp, nil
}
