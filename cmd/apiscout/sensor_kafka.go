package main

import (
	"errors"

	"github.com/apiscout/apiscout/sensor"
)

// newKafkaSink opens the Kafka producer of sensor.output kafka.
func newKafkaSink(a *app) (sensor.Sink, error) {
	return nil, errors.New("sensor.output kafka: the Kafka producer is not built into this binary yet")
}
