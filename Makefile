# Every pip call goes through constraints.txt: it pins the CPU build of torch 2.13.0.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python

# MONAI Label 0.8.5 and this project in their own environment: monailabel needs jsonschema<4 (via pydicom-seg) and
# pydicom<3, and installs a torchvision stand-in (tools/torchvision-stub), none of which belongs in .venv.
ML_VENV ?= .venv-monailabel
ML_PIP := $(ML_VENV)/bin/pip
ML_PIN := -c constraints-monailabel.txt --build-constraint constraints-monailabel.txt

.PHONY: install demo test test-heavy clean monailabel gpu-wheels

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/raagr2 study --profile quick

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

# the tests that run the real network over whole BraTS-size studies (minutes each), left out of `make test`
test-heavy: install
	$(PY) -m pytest -q -m heavy

# sam2 (a monailabel dependency) compiles optional CUDA kernels unless SAM2_BUILD_CUDA=0.
$(ML_VENV)/.installed: setup.cfg pyproject.toml constraints.txt constraints-monailabel.txt tools/torchvision-stub/pyproject.toml
	$(PYTHON) -m venv $(ML_VENV)
	$(ML_PIP) install -q --upgrade pip
	$(ML_PIP) install -q $(ML_PIN) ./tools/torchvision-stub
	SAM2_BUILD_CUDA=0 $(ML_PIP) install -q $(ML_PIN) monailabel==0.8.5 -e . pytest
	touch $@

monailabel: $(ML_VENV)/.installed

# The wheels of tools/gpu-wheels.txt, for tools/gpu_check.sh on a GPU machine with Python 3.12 and no registry. The
# folder is emptied first so that it holds exactly the listed set, which the check installs as .whl/*.whl.
GPU_WHEEL_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))

gpu-wheels:
	rm -rf .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_WHEEL_PLATFORMS) -d .whl -r tools/gpu-wheels.txt
	du -sh .whl

clean:
	rm -rf $(VENV) $(ML_VENV) build *.egg-info
