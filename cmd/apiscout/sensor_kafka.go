package main

import (
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/sensor/publish"
)

// newKafkaSink opens the Kafka producer of sensor.output kafka.
func newKafkaSink(a *app) (sensor.Sink, error) {
	id := a.cfg.Sensor.ID
	if id == "" {
		id = hostname()
	}
	return publish.New(a.cfg.Kafka, id, a.log, a.reg)
}
