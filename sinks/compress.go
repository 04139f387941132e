package sinks

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is --compress: none (the zero value), gzip or zstd, with a
// level. It is a pflag.Value.
type Compression struct {
	Algo  string // "", "gzip" or "zstd"
	Level int    // 0: the algorithm's default

	z *compressor // made by Set
}

// ParseCompression parses a --compress value (see Set).
func ParseCompression(s string) (Compression, error) {
	var c Compression
	err := c.Set(s)
	return c, err
}

// Set parses "gzip", "zstd", "gzip:9", "zstd:19" or "none".
func (c *Compression) Set(s string) error {
	algo, level, hasLevel := strings.Cut(s, ":")
	c.Algo, c.Level, c.z = "", 0, nil
	switch algo {
	case "none", "":
		if hasLevel {
			return fmt.Errorf("none takes no level")
		}
		return nil
	case "gzip", "zstd":
	default:
		return fmt.Errorf("takes gzip, zstd or none (with :LEVEL), not %q", s)
	}
	if hasLevel {
		n, err := strconv.Atoi(level)
		lo, hi := 1, 9
		if algo == "zstd" {
			hi = 22
		}
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%s levels go from %d to %d, not %q", algo, lo, hi, level)
		}
		c.Level = n
	}
	z, err := newCompressor(algo, c.Level)
	if err != nil {
		return err
	}
	c.Algo, c.z = algo, z
	return nil
}

func (c *Compression) String() string {
	if c.Algo == "" {
		return "none"
	}
	if c.Level != 0 {
		return c.Algo + ":" + strconv.Itoa(c.Level)
	}
	return c.Algo
}

func (c *Compression) Type() string { return "ALGO[:LEVEL]" }

// Encoding is the Content-Encoding the compressed bytes carry, "" for none.
func (c *Compression) Encoding() string { return c.Algo }

// On reports whether bodies are compressed.
func (c *Compression) On() bool { return c.z != nil }

// Append appends src compressed to dst. The output depends on src and the
// setting alone (no time, no name in a gzip header), so that a batch
// formed again compresses to the same bytes and compares equal to what an
// earlier attempt stored. It may be called from several goroutines.
func (c *Compression) Append(dst, src []byte) ([]byte, error) {
	if c.z == nil {
		return append(dst, src...), nil
	}
	return c.z.append(dst, src)
}

type compressor struct {
	gzipLevel int
	gz        sync.Pool // *gzip.Writer
	zs        *zstd.Encoder
}

func newCompressor(algo string, level int) (*compressor, error) {
	c := &compressor{}
	if algo == "gzip" {
		c.gzipLevel = gzip.DefaultCompression
		if level != 0 {
			c.gzipLevel = level
		}
		return c, nil
	}
	zl := zstd.SpeedDefault
	if level != 0 {
		zl = zstd.EncoderLevelFromZstd(level)
	}
	// EncodeAll on one encoder is safe from several goroutines; each
	// frame holds its size and a checksum, and is readable by zstdcat.
	zs, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zl), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	c.zs = zs
	return c, nil
}

func (c *compressor) append(dst, src []byte) ([]byte, error) {
	if c.zs != nil {
		return c.zs.EncodeAll(src, dst), nil
	}
	buf := bytes.NewBuffer(dst)
	zw, _ := c.gz.Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(buf, c.gzipLevel); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
	} else {
		zw.Reset(buf)
	}
	defer c.gz.Put(zw)
	if _, err := zw.Write(src); err != nil {
		return dst, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return dst, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}
