package config

import (
	"errors"
	"fmt"
	"time"
)

// KafkaConfig configures the transport between sensors and analyzers.
type KafkaConfig struct {
	Brokers []string `yaml:"brokers" help:"Kafka bootstrap brokers, comma separated"`
	Topic   string   `yaml:"topic" help:"topic of transaction records"`
	// DeadLetterTopic receives records the analyzer cannot decode.
	DeadLetterTopic string `yaml:"dead_letter_topic" help:"topic for records that cannot be decoded"`
	Group           string `yaml:"group" help:"consumer group of the analyzers"`
	// Partitions of the topics apiscout creates when they are missing:
	// the most analyzers that can share the load.
	Partitions int `yaml:"partitions" help:"partitions of topics created when missing (caps analyzer scale-out)"`
	// StartOffset for a new consumer group: earliest (default, loses
	// nothing) or latest.
	StartOffset string `yaml:"start_offset" help:"where a new consumer group starts: earliest or latest"`
	// Compression is zstd, lz4, snappy, gzip or none. lz4 (default) keeps
	// the transport within 2 cores at 200,000 records/s: measured end to
	// end with 1.2 KB API calls, zstd costs 1 to 2 us more CPU per record
	// (client and broker together) for a smaller uplink; choose it where
	// the sensors' bandwidth is dearer than their CPU.
	Compression string `yaml:"compression" help:"batch compression: zstd, lz4, snappy, gzip, none"`
	BatchSize   int    `yaml:"batch_size" help:"records per produced batch"`
	BatchBytes  int64  `yaml:"batch_bytes" help:"bytes per produced batch"`
	// BatchTimeout is how long the producer waits to fill a partition's
	// batch. The sensor already hands over batches of thousands, so a
	// long wait only adds latency (and kafka-go's synchronous writes wait
	// it out on every call): keep it short.
	BatchTimeout time.Duration `yaml:"batch_timeout" help:"longest wait before a partial batch is sent"`
	// PackBytes packs the transactions of one service in one output batch
	// of the sensor into Kafka records of about this size; 0 sends one
	// record per transaction.
	PackBytes int `yaml:"pack_bytes" help:"pack a service's transactions into Kafka records of about this many bytes (0: one each)"`
	// RequiredAcks: all (default; every in-sync replica), one, none.
	RequiredAcks string `yaml:"required_acks" help:"acknowledgement: all, one, none"`
	MaxAttempts  int    `yaml:"max_attempts" help:"send attempts before spooling a batch"`
	// MaxInflightBytes bounds the records handed to Kafka and not yet
	// acknowledged. Past it Kafka counts as slow: records go to the spool
	// (or, without one, the sensor's output waits). Costs that much memory.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes" help:"bytes sent and not yet acknowledged before Kafka counts as slow"`

	// SpoolDir holds records while Kafka is unreachable.
	SpoolDir   string `yaml:"spool_dir" help:"directory of the on-disk spool (empty: no spool)"`
	SpoolBytes int64  `yaml:"spool_bytes" help:"spool size limit in bytes"`
	// SpoolFsync: always, batch or never.
	SpoolFsync string `yaml:"spool_fsync" help:"spool fsync policy: always, batch, never"`

	TLS           bool   `yaml:"tls" help:"connect to Kafka with TLS"`
	TLSCA         string `yaml:"tls_ca" help:"CA bundle for the brokers' certificates"`
	TLSCert       string `yaml:"tls_cert" help:"client certificate (mTLS)"`
	TLSKey        string `yaml:"tls_key" help:"client key (mTLS)"`
	TLSSkipVerify bool   `yaml:"tls_skip_verify" help:"do not verify the brokers' certificates (testing only)"`
	// SASLMechanism: "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string `yaml:"sasl_mechanism" help:"SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"`
	SASLUser      string `yaml:"sasl_user" help:"SASL user name"`
	SASLPassword  string `yaml:"sasl_password" help:"SASL password (prefer the environment variable)"`
}

func defaultKafka() KafkaConfig {
	return KafkaConfig{
		Brokers:         []string{"127.0.0.1:9092"},
		Topic:           "apiscout.transactions",
		DeadLetterTopic: "apiscout.deadletter",
		Group:           "apiscout-analyzer",
		Partitions:      12,
		StartOffset:     "earliest",
		Compression:     "lz4",
		BatchSize:       10000,
		// 1 MiB: the broker's default message.max.bytes; kafka-go sizes
		// batches before compression, and a larger batch that compresses
		// badly is refused whole.
		BatchBytes:   1 << 20,
		BatchTimeout: 5 * time.Millisecond,
		// 64 KiB packs: Kafka's cost is mostly per record (client, broker
		// and consumer), and packs form within one output batch, so they
		// add no wait; a pack that cannot be framed goes to the
		// dead-letter topic whole.
		PackBytes:    64 << 10,
		RequiredAcks: "all",
		MaxAttempts:  5,
		// 64 MiB: about 300 ms of the sensor's output at 200,000 records/s.
		MaxInflightBytes: 64 << 20,
		SpoolBytes:       1 << 30,
		SpoolFsync:       "batch",
	}
}

func (k *KafkaConfig) validate() error {
	var errs []error
	switch k.StartOffset {
	case "earliest", "latest":
	default:
		errs = append(errs, fmt.Errorf("kafka.start_offset: %q is not earliest or latest", k.StartOffset))
	}
	switch k.Compression {
	case "zstd", "lz4", "snappy", "gzip", "none":
	default:
		errs = append(errs, fmt.Errorf("kafka.compression: %q is not zstd, lz4, snappy, gzip or none", k.Compression))
	}
	switch k.RequiredAcks {
	case "all", "one", "none":
	default:
		errs = append(errs, fmt.Errorf("kafka.required_acks: %q is not all, one or none", k.RequiredAcks))
	}
	switch k.SpoolFsync {
	case "always", "batch", "never":
	default:
		errs = append(errs, fmt.Errorf("kafka.spool_fsync: %q is not always, batch or never", k.SpoolFsync))
	}
	switch k.SASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl_mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASLMechanism))
	}
	if k.PackBytes < 0 || int64(k.PackBytes) > k.BatchBytes/2 {
		errs = append(errs, fmt.Errorf("kafka.pack_bytes: %d is not between 0 and half of kafka.batch_bytes (%d)", k.PackBytes, k.BatchBytes))
	}
	if k.MaxInflightBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("kafka.max_inflight_bytes: %d is below 1 MiB (one batch must fit)", k.MaxInflightBytes))
	}
	if k.Topic == "" {
		errs = append(errs, errors.New("kafka.topic: must not be empty"))
	}
	return errors.Join(errs...)
}
