// Package kafkaconf turns the kafka section of the configuration into
// kafka-go's transport settings, shared by the sensor's producer and the
// analyzer's consumer: TLS (and mTLS), SASL PLAIN and SCRAM, compression
// and acknowledgements.
package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/apiscout/apiscout/internal/config"
)

// TLS returns the TLS settings, or nil when TLS is off.
func TLS(c config.KafkaConfig) (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSSkipVerify} //nolint:gosec // opt-in for tests
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls_ca: no certificate in %s", c.TLSCA)
		}
		t.RootCAs = pool
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls_cert/kafka.tls_key: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// SASL returns the SASL mechanism, or nil when none is configured.
func SASL(c config.KafkaConfig) (sasl.Mechanism, error) {
	switch c.SASLMechanism {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Mechanism{Username: c.SASLUser, Password: c.SASLPassword}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, c.SASLUser, c.SASLPassword)
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, c.SASLUser, c.SASLPassword)
	}
	return nil, fmt.Errorf("kafka.sasl_mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
}

// Transport builds the producer's transport.
func Transport(c config.KafkaConfig, clientID string) (*kafka.Transport, error) {
	t, err := TLS(c)
	if err != nil {
		return nil, err
	}
	m, err := SASL(c)
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{TLS: t, SASL: m, ClientID: clientID, DialTimeout: 5 * time.Second}, nil
}

// Dialer builds the consumer's dialer.
func Dialer(c config.KafkaConfig, clientID string) (*kafka.Dialer, error) {
	t, err := TLS(c)
	if err != nil {
		return nil, err
	}
	m, err := SASL(c)
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{TLS: t, SASLMechanism: m, ClientID: clientID, Timeout: 5 * time.Second, DualStack: true}, nil
}

// Compression maps kafka.compression to kafka-go's codec (0: none).
func Compression(name string) (compress.Compression, error) {
	switch name {
	case "none", "":
		return 0, nil
	case "gzip":
		return compress.Gzip, nil
	case "snappy":
		return compress.Snappy, nil
	case "lz4":
		return compress.Lz4, nil
	case "zstd":
		return compress.Zstd, nil
	}
	return 0, fmt.Errorf("kafka.compression: %q is not zstd, lz4, snappy, gzip or none", name)
}

// Acks maps kafka.required_acks. kafka-go's zero value means no
// acknowledgement at all: it is never left implicit here.
func Acks(name string) (kafka.RequiredAcks, error) {
	switch name {
	case "all", "":
		return kafka.RequireAll, nil
	case "one":
		return kafka.RequireOne, nil
	case "none":
		return kafka.RequireNone, nil
	}
	return 0, fmt.Errorf("kafka.required_acks: %q is not all, one or none", name)
}

// EnsureTopic creates topic with the configured partitions when it does
// not exist yet, and waits until every partition has a leader; a topic
// auto-created by the broker on first write would reject that write.
func EnsureTopic(ctx context.Context, c config.KafkaConfig, topic string) error {
	d, err := Dialer(c, "apiscout-admin")
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		if last = ensureOnce(ctx, d, c.Brokers[0], topic, c.Partitions); last == nil {
			return nil
		}
		if errors.Is(last, kafka.SASLAuthenticationFailed) || errors.Is(last, kafka.UnsupportedSASLMechanism) {
			return fmt.Errorf("topic %s: %w (check kafka.sasl_*)", topic, last) // retrying will not help
		}
		var verr *tls.CertificateVerificationError
		if errors.As(last, &verr) {
			return fmt.Errorf("topic %s: %w (check kafka.tls_*)", topic, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s: %w (last error: %v)", topic, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("topic %s: %w", topic, last)
}

func ensureOnce(ctx context.Context, d *kafka.Dialer, broker, topic string, partitions int) error {
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	parts, err := TopicPartitions(conn, topic)
	if err != nil {
		return err
	}
	if len(parts) > 0 {
		for _, p := range parts {
			if p.Leader.Host == "" {
				return fmt.Errorf("partition %d has no leader yet", p.ID)
			}
		}
		return nil
	}
	ctl, err := conn.Controller()
	if err != nil {
		return err
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctl.Host, strconv.Itoa(ctl.Port)))
	if err != nil {
		return err
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: -1}); err != nil &&
		!errors.Is(err, kafka.TopicAlreadyExists) {
		return err
	}
	return errors.New("created; waiting for leaders")
}

// Partitions returns the partition ids of topic, in order.
func Partitions(ctx context.Context, c config.KafkaConfig, topic string) ([]int, error) {
	d, err := Dialer(c, "apiscout-admin")
	if err != nil {
		return nil, err
	}
	var last error
	for _, b := range c.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		parts, err := TopicPartitions(conn, topic)
		conn.Close()
		if err != nil {
			last = err
			continue
		}
		if len(parts) == 0 {
			return nil, fmt.Errorf("partitions of %s: no such topic", topic)
		}
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
		}
		sort.Ints(ids)
		return ids, nil
	}
	return nil, fmt.Errorf("partitions of %s: %w", topic, last)
}

// TopicPartitions reads a topic's partitions from all topics' metadata,
// empty when it does not exist. Asking for the one topic would do: but a
// metadata request naming a missing topic makes a broker with
// auto.create.topics.enable create it, with the broker's partition count
// instead of kafka.partitions, and a look must not create anything.
func TopicPartitions(conn *kafka.Conn, topic string) ([]kafka.Partition, error) {
	all, err := conn.ReadPartitions()
	if err != nil {
		return nil, err
	}
	var parts []kafka.Partition
	for _, p := range all {
		if p.Topic == topic {
			parts = append(parts, p)
		}
	}
	return parts, nil
}
