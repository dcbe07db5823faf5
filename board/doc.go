// Package board holds board profiles: the configuration files, init scripts
// and systemd unit that fit ipcd to a particular camera board (which capture
// source and speaker sink it uses, device paths, where state lives). The
// profiles are YAML files in profiles/ that a user copies to
// /etc/ipcd/ipcd.yaml; docs/boards.md explains how to install them.
package board
