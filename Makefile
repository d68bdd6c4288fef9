# Thin wrappers over the scripts in tools/ (the scripts are the reference).
PREFIX ?= /usr/local

.PHONY: all build deps install test demo deb test-package
all: build
build:
	cargo build --release --locked
deps:
	tools/ci-deps.sh
install:
	PREFIX=$(PREFIX) tools/install.sh
test:
	tools/test.sh
demo:
	tools/demo.sh
deb:
	tools/build-deb.sh
test-package:
	tools/test-package.sh
