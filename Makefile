# facelab: `make demo` installs everything and runs all notebooks on the offline demo data;
# `make test` runs the test suite (what CI runs).  Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo smoke test lint install lab doctor figures clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# + the project's Jupyter kernel "facelab" (inside .venv, not in ~) and the git filter that
# commits notebooks without outputs (nbstripout): both cheap, both redone on every install
install: $(STAMP)
	$(BIN)/python -c "from facelab.notebook_runner import install_jupyter; install_jupyter()"

demo: install
	$(BIN)/facelab doctor
	$(BIN)/facelab run-notebooks --profile demo

smoke: install
	$(BIN)/facelab run-notebooks --profile smoke

# JupyterLab from .venv at the repository root: notebooks/ and the executed copies in runs/.
# The save hook keeps `git status` clean after a notebook is run in place; CurveZMQ keys
# spare the log ipykernel's unencrypted-TCP warning; Jupyter wants --allow-root as root.
lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
	  --ContentsManager.post_save_hook=facelab.notebook_runner.refresh_git_after_save \
	  --KernelManager.transport_encryption=auto \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# pytest exits 5 when it collected no test: a suite that tests nothing fails here too.
test: install
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check facelab tests benchmarks

doctor: $(STAMP)
	$(BIN)/facelab doctor

# after `make demo`: one figure per executed notebook -> docs/figures/NN.png (the README's)
FIGURES_FROM ?= runs/demo
FIGURES_TO ?= docs/figures
figures: $(STAMP)
	$(BIN)/python -c "from facelab.notebook_runner import extract_figures; \
	extract_figures('$(FIGURES_FROM)', '$(FIGURES_TO)')"

clean:
	rm -rf runs .pytest_cache
