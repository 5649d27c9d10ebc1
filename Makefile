# One venv for everything; every target installs what it needs first, so on a fresh
# machine with only Python 3.11+, make and git, `make demo` or `make test` is the first command.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
STUBS := $(VENV)/stubs
STDLIB_STUBS := micropython-stdlib-stubs==1.29.0.post2
RP2_STUBS := micropython-rp2-rpi-pico-stubs==1.29.0.post1
ESP32_STUBS := micropython-esp32-stubs==1.29.0.post1
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup test demo sim bench lint flash clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[dev]'
	# Each board's stubs go to their own folder: the packages install the same module names.
	$(PIP) install --no-deps --target $(STUBS)/rp2 --upgrade $(RP2_STUBS) $(STDLIB_STUBS)
	$(PIP) install --no-deps --target $(STUBS)/esp32 --upgrade $(ESP32_STUBS) $(STDLIB_STUBS)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/meterctl demo

sim: setup
	$(BIN)/meterctl sim --speed 1

bench: setup
	$(BIN)/python tests/bench/run_all.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests/test_static.py -q

flash: setup
	@test -n "$(BOARD)" -a -n "$(PORT)" || { echo "usage: make flash BOARD=pico|esp32 PORT=/dev/ttyACM0"; exit 2; }
	$(BIN)/meterctl flash --board $(BOARD) --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
