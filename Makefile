# Every target bootstraps .venv itself, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The .deb's virtualenv uses the target's interpreter: build on the PVE release it is for.
DEB_PYTHON      ?= /usr/bin/python3
DEB_COMPRESSION ?= xz

.PHONY: demo test bench bench-quick whatif-examples whatif-bench clean wheel deb man test-packaging

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/proxlb-opt plan --model models/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick --skip-proxlb --skip-solver --out /tmp/proxlb-opt-bench-quick

# benchmarks/results/whatif/: N+1, room, growth curve and rolling runbook of the demo and enterprise models.
whatif-examples: $(STAMP)
	$(BIN)/python -m benchmarks.whatif_examples

# N+1 over every node of generated 64 x 10,000 clusters (mild and hard), timed; appends to results/whatif/.
whatif-bench: $(STAMP)
	$(BIN)/python -m benchmarks.whatif_bench

# dist/proxlb_opt-<version>-py3-none-any.whl (what pipx installs from the repository).
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --disable-pip-version-check -w dist .

# dist/proxlb-opt_<version>_<arch>.deb: a virtualenv under /opt/proxlb-opt with the dependencies from PyPI,
# the systemd unit, sysusers.d snippet, man page and example config (packaging/build_deb.py).
deb: $(STAMP)
	$(BIN)/python packaging/build_deb.py --python $(DEB_PYTHON) --compression $(DEB_COMPRESSION) --out dist

# docs/proxlb-opt.1 (roff) from docs/proxlb-opt.1.md; a test fails when it is stale.
man:
	$(PYTHON) packaging/md2man.py docs/proxlb-opt.1.md -o docs/proxlb-opt.1

# The packaging checks alone (part of `make test` too).
test-packaging: $(STAMP)
	$(BIN)/python -m pytest tests/packaging

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
