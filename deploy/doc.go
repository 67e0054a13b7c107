// Package deploy holds no code: it is the home of the deployment files
// (Dockerfile, compose.yaml, k8s/, systemd/) and of the tests that check
// them against the configuration they configure.
package deploy
