// Package kafkareal fetches Apache Kafka from Maven Central and runs a
// single-node broker of it on loopback ports, for tests that must meet a
// real broker rather than kfake: a KRaft broker and controller in one JVM,
// with PLAINTEXT, SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256) and SSL
// listeners, and a log cleaner quick enough to test compaction. Tests
// reach the broker tools/kafka-real started through kafka/kafkatest.
package kafkareal

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/internal/testcert"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DefaultVersion is the Kafka release fetched when none is named.
const DefaultVersion = "4.1.1"

// log4jVersion is the Log4j 2 release Kafka 4.x is built with; its SLF4J
// binding is not among Kafka's Maven dependencies, and without it the
// broker logs nothing.
const log4jVersion = "2.24.3"

// CacheDir is where fetched releases are kept, outside any repository:
// $XDG_CACHE_HOME/batchpipe, or ~/.cache/batchpipe.
func CacheDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "batchpipe"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("kafka-real: cache directory: %w", err)
	}
	return filepath.Join(home, ".cache", "batchpipe"), nil
}

// Fetch returns the directory holding the jars of Kafka version (kafka_2.13
// and its runtime dependencies), fetching them with Maven the first time.
// Maven's output goes to log.
func Fetch(version string, log io.Writer) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "kafka-"+version)
	libs := filepath.Join(dir, "libs")
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+version+".jar")); err == nil {
		return libs, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kafka-real: fetch kafka %s: %w", version, err)
	}
	pom := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pom, []byte(fmt.Sprintf(pomXML, version, log4jVersion)), 0o644); err != nil {
		return "", fmt.Errorf("kafka-real: fetch kafka %s: %w", version, err)
	}
	// Into a temporary directory first: an interrupted fetch leaves no
	// half set of jars that looks complete.
	tmp := libs + ".tmp"
	os.RemoveAll(tmp)
	mvn := exec.Command("mvn", "-B", "-q", "-Dstyle.color=never", "-f", pom, "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory="+tmp)
	// Quiet unless it fails: then all it said.
	if out, err := mvn.CombinedOutput(); err != nil {
		log.Write(out)
		return "", fmt.Errorf("kafka-real: fetch kafka %s with maven: %w", version, err)
	}
	os.RemoveAll(libs)
	if err := os.Rename(tmp, libs); err != nil {
		return "", fmt.Errorf("kafka-real: fetch kafka %s: %w", version, err)
	}
	return libs, nil
}

const pomXML = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>batchpipe</groupId>
  <artifactId>kafka-real</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>%s</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>%s</version>
    </dependency>
  </dependencies>
</project>
`

// Config says how to run a broker.
type Config struct {
	Libs string // jars, from Fetch
	Dir  string // data directory, created; it holds the logs, configuration, certificates and broker.log
	Java string // the java command; "java" if empty
	Heap string // -Xmx; 512m if empty
}

// A Broker is a running (or stopped) broker. Its addresses stay the same
// across Restart.
type Broker struct {
	Plaintext, SASL, SSL string // host:port of each listener
	Controller           string
	CAFile               string // CA of the SSL listener's certificate
	User, Password       string // the SASL user, for PLAIN and SCRAM-SHA-256
	Dir                  string
	Version              string // of the jars, if known

	cfg  Config
	cmd  *exec.Cmd
	done chan struct{} // closed when the JVM has exited
	err  error         // its exit status, once done
}

// Start formats a new broker in cfg.Dir and starts it, returning once every
// listener answers.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Java == "" {
		cfg.Java = "java"
	}
	if cfg.Heap == "" {
		cfg.Heap = "512m"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("kafka-real: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		Plaintext:  ports[0],
		SASL:       ports[1],
		SSL:        ports[2],
		Controller: ports[3],
		User:       "batchpipe-test",
		Password:   "kreal-" + randomHex(12),
		Dir:        cfg.Dir,
		Version:    versionOf(cfg.Libs),
		cfg:        cfg,
	}
	certs, err := testcert.Write(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("kafka-real: certificates: %w", err)
	}
	b.CAFile = certs.CAFile
	// The PEM keystore takes the key and its chain in one file.
	keystore := filepath.Join(cfg.Dir, "keystore.pem")
	key, err1 := os.ReadFile(certs.ServerKey)
	cert, err2 := os.ReadFile(certs.ServerCert)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("kafka-real: %w", err)
	}
	if err := os.WriteFile(keystore, append(key, cert...), 0o600); err != nil {
		return nil, fmt.Errorf("kafka-real: %w", err)
	}
	props := filepath.Join(cfg.Dir, "server.properties")
	if err := os.WriteFile(props, []byte(b.properties(keystore)), 0o600); err != nil {
		return nil, fmt.Errorf("kafka-real: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "log4j2.properties"), []byte(log4j), 0o644); err != nil {
		return nil, fmt.Errorf("kafka-real: %w", err)
	}
	format := b.java("kafka.tools.StorageTool", "format", "-t", clusterID(), "-c", props,
		"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", b.User, b.Password))
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka-real: format storage: %w\n%s", err, out)
	}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) properties(keystore string) string {
	lines := []string{
		"process.roles=broker,controller",
		"node.id=1",
		"controller.quorum.voters=1@" + b.Controller,
		"controller.listener.names=CONTROLLER",
		fmt.Sprintf("listeners=PLAINTEXT://%s,SASL_PLAINTEXT://%s,SSL://%s,CONTROLLER://%s", b.Plaintext, b.SASL, b.SSL, b.Controller),
		fmt.Sprintf("advertised.listeners=PLAINTEXT://%s,SASL_PLAINTEXT://%s,SSL://%s", b.Plaintext, b.SASL, b.SSL),
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name=PLAINTEXT",
		"log.dirs=" + filepath.Join(b.Dir, "data"),

		// One node: every internal topic has one replica, and few
		// partitions, so that the first group or transaction is quick.
		"num.partitions=1",
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=4",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"transaction.state.log.num.partitions=4",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		// Groups as tests want them: no wait before the first
		// rebalance, and short sessions allowed.
		"group.initial.rebalance.delay.ms=0",
		"group.min.session.timeout.ms=100",
		// Tests name their topics; a typo must not create one.
		"auto.create.topics.enable=false",
		// A log cleaner that acts within a second on topics that ask for
		// it (cleanup.policy=compact, segment.ms, min.cleanable.dirty.ratio).
		"log.cleaner.backoff.ms=100",
		"log.retention.check.interval.ms=1000",
		"log.segment.delete.delay.ms=0",
		"file.delete.delay.ms=0",

		"sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
		fmt.Sprintf(`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, b.User, b.Password),
		"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",

		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + keystore,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + b.CAFile,
		"ssl.client.auth=none",
	}
	return strings.Join(lines, "\n") + "\n"
}

// log4j sends the broker's log to broker.log in its directory.
const log4j = `rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=${sys:kafka.logs.dir}/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
`

func (b *Broker) java(main string, args ...string) *exec.Cmd {
	jvm := []string{
		"-Xmx" + b.cfg.Heap, "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Djava.awt.headless=true",
		"-Dkafka.logs.dir=" + b.Dir,
		"-Dlog4j2.configurationFile=" + filepath.Join(b.Dir, "log4j2.properties"),
		"-cp", filepath.Join(b.cfg.Libs, "*"),
		main,
	}
	c := exec.Command(b.cfg.Java, append(jvm, args...)...)
	// Its own process group, so that a terminal's Ctrl-C reaches only
	// the process that owns it, which stops it; and killed with its
	// parent, so that it never outlives it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return c
}

func (b *Broker) start(ctx context.Context) error {
	out, err := os.OpenFile(filepath.Join(b.Dir, "broker.out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafka-real: %w", err)
	}
	defer out.Close()
	b.cmd = b.java("kafka.Kafka", filepath.Join(b.Dir, "server.properties"))
	b.cmd.Stdout, b.cmd.Stderr = out, out
	// Pdeathsig follows the thread that started the child: keep that
	// thread for as long as the child may live (it is not reused once
	// this goroutine ends while locked).
	started := make(chan error, 1)
	b.done = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := b.cmd.Start(); err != nil {
			started <- err
			close(b.done)
			return
		}
		started <- nil
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("kafka-real: start java: %w", err)
	}
	if err := b.waitReady(ctx); err != nil {
		b.Kill()
		return err
	}
	return nil
}

// waitReady returns once every listener answers a metadata request, with
// both SASL mechanisms and over TLS.
func (b *Broker) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for _, l := range b.listeners() {
		for {
			err := l.ping(ctx)
			if err == nil {
				break
			}
			select {
			case <-b.done:
				return fmt.Errorf("kafka-real: broker exited (%v) before it was ready; see %s", b.err, filepath.Join(b.Dir, "broker.log"))
			case <-ctx.Done():
				return fmt.Errorf("kafka-real: %s listener not ready within 2 minutes: %v; see %s", l.name, err, filepath.Join(b.Dir, "broker.log"))
			case <-tick.C:
			}
		}
	}
	return nil
}

type listener struct {
	name string
	opts []kgo.Opt
}

func (l listener) ping(ctx context.Context) error {
	cl, err := kgo.NewClient(append(l.opts, kgo.DialTimeout(time.Second))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func (b *Broker) listeners() []listener {
	tc, _ := TLSConfig(b.CAFile)
	return []listener{
		{"plaintext", []kgo.Opt{kgo.SeedBrokers(b.Plaintext)}},
		{"sasl plain", []kgo.Opt{kgo.SeedBrokers(b.SASL), kgo.SASL(plain.Auth{User: b.User, Pass: b.Password}.AsMechanism())}},
		{"sasl scram-sha-256", []kgo.Opt{kgo.SeedBrokers(b.SASL), kgo.SASL(scram.Auth{User: b.User, Pass: b.Password}.AsSha256Mechanism())}},
		{"ssl", []kgo.Opt{kgo.SeedBrokers(b.SSL), kgo.DialTLSConfig(tc)}},
	}
}

// Stop stops the broker: politely, then with SIGKILL after 20 seconds.
func (b *Broker) Stop() error {
	select {
	case <-b.done:
		return nil
	default:
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-b.done:
		return nil
	case <-t.C:
		return b.Kill()
	}
}

// Kill kills the broker with SIGKILL, as a crash would, and waits for it.
func (b *Broker) Kill() error {
	select {
	case <-b.done:
		return nil
	default:
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
	return nil
}

// Done is closed when the JVM has exited.
func (b *Broker) Done() <-chan struct{} { return b.done }

// Restart starts a stopped broker again from its data directory, on the
// same ports.
func (b *Broker) Restart(ctx context.Context) error {
	select {
	case <-b.done:
	default:
		return errors.New("kafka-real: restart: the broker is running")
	}
	return b.start(ctx)
}

// Env file keys.
const (
	EnvPlaintext = "KAFKA_REAL_PLAINTEXT"
	EnvSASL      = "KAFKA_REAL_SASL"
	EnvSSL       = "KAFKA_REAL_SSL"
	EnvCA        = "KAFKA_REAL_CA"
	EnvUser      = "KAFKA_REAL_USER"
	EnvPassword  = "KAFKA_REAL_PASSWORD"
	EnvLibs      = "KAFKA_REAL_LIBS"
	EnvVersion   = "KAFKA_REAL_VERSION"
	EnvDir       = "KAFKA_REAL_DIR"
)

// Env returns what a test needs to reach the broker, as KEY=VALUE pairs.
func (b *Broker) Env() map[string]string {
	return map[string]string{
		EnvPlaintext: b.Plaintext,
		EnvSASL:      b.SASL,
		EnvSSL:       b.SSL,
		EnvCA:        b.CAFile,
		EnvUser:      b.User,
		EnvPassword:  b.Password,
		EnvLibs:      b.cfg.Libs,
		EnvVersion:   b.Version,
		EnvDir:       b.Dir,
	}
}

// WriteEnv writes Env to a file of KEY=VALUE lines, which a shell can
// source, atomically.
func (b *Broker) WriteEnv(path string) error {
	env := b.Env()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%s\n", k, env[k])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("kafka-real: env file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("kafka-real: env file: %w", err)
	}
	return nil
}

// ReadEnv reads a file written by WriteEnv.
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kafka-real: env file: %w", err)
	}
	defer f.Close()
	env := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kafka-real: env file %s: %w", path, err)
	}
	for _, k := range []string{EnvPlaintext, EnvSASL, EnvSSL, EnvCA, EnvUser, EnvPassword, EnvLibs} {
		if env[k] == "" {
			return nil, fmt.Errorf("kafka-real: env file %s has no %s", path, k)
		}
	}
	return env, nil
}

func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafka-real: free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// clusterID is a random Kafka UUID, which StorageTool takes in base64.
func clusterID() string {
	for {
		b := make([]byte, 16)
		rand.Read(b)
		id := base64.RawURLEncoding.EncodeToString(b)
		if id[0] != '-' { // it would read as a flag
			return id
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// versionOf reads the Kafka version from the name of the kafka_2.13 jar.
func versionOf(libs string) string {
	m, _ := filepath.Glob(filepath.Join(libs, "kafka_2.13-*.jar"))
	if len(m) == 0 {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m[0]), "kafka_2.13-"), ".jar")
}

// FreePort returns a loopback port free now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("kafka-real: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
