module tinytail.test/agent-fuzz-seed-gen

go 1.26.4

require tailscale.com v1.101.0-pre
