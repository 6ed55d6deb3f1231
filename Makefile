# The README's commands are these targets. Both install what they need themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup system-deps postgres lint man bench clean

## make run: install and start ashd on 127.0.0.1:4100 with data under ./data (SQLite).
## Without ANTHROPIC_API_KEY/ANTHROPIC_AUTH_TOKEN it also starts the bundled scripted model.
run: setup
	@scripts/run-local

## make test: the whole suite (unit, store on SQLite and Postgres, bridge, actors, end to end).
test: setup postgres
	$(BIN)/python -m pytest

setup: $(STAMP) system-deps

# One line per step it takes; nothing once everything is installed (the stamp is current).
$(STAMP):
	@test -x $(BIN)/python || { echo "setup: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: installing Python packages into $(VENV) (first run: about a minute)"
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[daemon,test,man]'
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@scripts/ensure-system-deps

postgres:
	@scripts/ensure-postgres

lint: setup
	$(BIN)/ruff check ashd tests benchmarks
	$(BIN)/mypy ashd

## make man: regenerate man/ from the parsers and ashd/config*.py (scripts/build_man.py).
man: setup
	$(BIN)/python scripts/build_man.py man

# setup also puts the pages where man(1) finds them: $(VENV)/share/man (see the README).
MAN_INSTALLED := $(VENV)/share/man/man1/ashd.1 $(VENV)/share/man/man1/ashctl.1 $(VENV)/share/man/man5/ashd.toml.5
setup: $(MAN_INSTALLED)
$(VENV)/share/man/man1/%.1: man/%.1 | $(STAMP)
	@install -D -m 0644 $< $@
$(VENV)/share/man/man5/%.5: man/%.5 | $(STAMP)
	@install -D -m 0644 $< $@

bench: setup
	$(BIN)/python benchmarks/message_latency.py --out benchmarks/results/message_latency.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
