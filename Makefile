# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: venv demo test clean-results

# torch==2.13.0 first and alone: pip then takes the CPU build on this machine's disk
# instead of resolving a several-GB CUDA build through another package.
$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES)
	@$(BIN)/python -c "import yaml; print('Report: results/' + yaml.safe_load(open('config/config.yaml'))['run'] + '/report/index.html')"

test: venv
	$(BIN)/python -m pytest

clean-results:
	rm -rf results/cache results/demo logs .snakemake
