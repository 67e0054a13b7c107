// Package e2e holds tests that cross the sensor/analyzer boundary through
// real services: the sensor's Kafka producer to the analyzer's consumer
// through a real broker. It has no code of its own.
package e2e
