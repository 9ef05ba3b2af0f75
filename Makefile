# sisafs: see README.md. Every target installs what it needs first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench lint clean install-systemd install-man man

install: $(STAMP)

$(STAMP): scripts/install.sh pyproject.toml setup.py
	VENV=$(VENV) scripts/install.sh
	touch $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

# MP12_ARGS=--full runs the 200-photo 12 MP workload of issue 11 (default: 40 photos)
MP12_ARGS ?=
bench: install
	$(PY) bench/fs_bench.py
	$(PY) bench/mp12_bench.py $(MP12_ARGS)
	$(PY) bench/size_bench.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf build demo .pytest_cache

# systemd user unit (and, as root, the mount(8) helper for .mount/.automount units and
# fstab). @SISAFS@ becomes this checkout's sisafs. Override SYSTEMD_USER_DIR, or set
# MOUNT_HELPER_DIR= (empty) to skip the helper.
SYSTEMD_USER_DIR ?= $(HOME)/.config/systemd/user
MOUNT_HELPER_DIR ?= $(if $(filter 0,$(shell id -u)),/sbin,)
SISAFS_BIN ?= $(abspath $(VENV)/bin/sisafs)

install-systemd: install-man
	mkdir -p $(DESTDIR)$(SYSTEMD_USER_DIR)
	sed 's|@SISAFS@|$(SISAFS_BIN)|g' systemd/sisafs@.service > $(DESTDIR)$(SYSTEMD_USER_DIR)/sisafs@.service
	if [ -n "$(MOUNT_HELPER_DIR)" ]; then mkdir -p $(DESTDIR)$(MOUNT_HELPER_DIR) && \
	  sed 's|@SISAFS@|$(SISAFS_BIN)|g' systemd/mount.fuse.sisafs > $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.sisafs && \
	  chmod 755 $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.sisafs; fi
	@echo "installed; now: systemctl --user daemon-reload (see docs/howto.md)"

# The man page, where man(1) looks: as root the system's local pages, otherwise
# ~/.local/share/man (man-db searches it when ~/.local/bin is on PATH; else set MANPATH).
MANDIR ?= $(if $(filter 0,$(shell id -u)),/usr/local/share/man,$(HOME)/.local/share/man)

install-man:
	mkdir -p $(DESTDIR)$(MANDIR)/man1
	install -m 644 docs/man/sisafs.1 $(DESTDIR)$(MANDIR)/man1/sisafs.1
	@echo "installed $(MANDIR)/man1/sisafs.1: try 'man sisafs'"

# The man page and docs/exit-codes.md, generated from the argparse parser and
# sisafs.errors so they cannot drift (tests/test_docs_generated compares).
man:
	$(PY) -m sisafs.cli.manpage docs/man/sisafs.1 docs/exit-codes.md
