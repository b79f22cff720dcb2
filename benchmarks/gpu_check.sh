#!/usr/bin/env bash
# Verify the device work on a CUDA machine, offline, in under 8 minutes on one GPU:
#
#   bash benchmarks/gpu_check.sh DATA_DIR [WHEELHOUSE]
#
# DATA_DIR: MNIST in torchvision's layout (DATA_DIR/MNIST/raw/...). WHEELHOUSE (default
# ./wheelhouse): the folder `make wheels PY=<host python> PLATFORM=<host platform>` built on a
# networked machine (about 90 MB; 25 MB with HOST_HAS=scipy,pandas,matplotlib,scikit-learn where the host
# has those): this project's wheel and what these steps import, with
# mlflow-skinny for mlflow (benchmarks/wheelhouse.py lists what is left out and why).
#
# Expects a Python (PYTHON, default python3; a venv's is fine) with CUDA,
# torch >= 2.4 and torchvision already installed, and with them numpy and pillow (torchvision
# requires both): the wheelhouse holds none of these. A host without torchvision: build the
# wheelhouse with TORCHVISION=<the version matching its torch>, which adds torchvision, numpy
# and pillow. pip checks every version bound; where the host's numpy or pillow is too old
# (today's pandas needs numpy >= 2.0.2), that TORCHVISION wheelhouse brings newer ones too.
# Installs into a throwaway venv that sees the host's packages, in a temp folder, keeps every
# store and checkpoint there, and removes it at the end: nothing else on the host is touched.
# Steps:
#   1. the `cuda`-marked tests
#   2. default `main` on the GPU in bf16: wall time, training images/s and test metrics beside
#      the CPU row of docs/results.md (targets: <= 60 s of training; within 0.1 dB and 0.5 nats of the CPU)
#   3. a 2-process nccl `ae` run (1 epoch), if there are two GPUs
#   4. the served denoiser's p50 at batch 1 and 256 on the GPU (benchmarks/serving.py)
set -uo pipefail

DATA_DIR=${1:?usage: bash benchmarks/gpu_check.sh DATA_DIR [WHEELHOUSE]}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WHEELHOUSE=${2:-$REPO/wheelhouse}
PYTHON=${PYTHON:-python3}
DATA_DIR=$(cd "$DATA_DIR" && pwd) || { echo "no data dir $1"; exit 2; }
WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd) || { echo "no wheelhouse $WHEELHOUSE (make wheels on a networked machine)"; exit 2; }

TMP=$(mktemp -d -t latent-models-gpu-check-XXXXXX)
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
export TMPDIR=$TMP  # every temporary file of the steps below lands in the folder removed at the end
STATUS=0
step() { echo; echo "=== $* ($(date +%T))"; }
fail() { echo "FAILED: $*"; STATUS=1; }

step "host"
"$PYTHON" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', \
torch.version.cuda, '| GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')" \
  || { echo "no torch in $PYTHON"; exit 2; }
"$PYTHON" -c "import torch; assert torch.cuda.is_available()" || { echo "torch sees no CUDA GPU"; exit 2; }
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
echo "GPUs (nvidia-smi -L): $GPUS"

step "install into $TMP/venv from $WHEELHOUSE (no network)"
"$PYTHON" -m venv --system-site-packages "$TMP/venv" || exit 2
VPY=$TMP/venv/bin/python
# A venv of Python < 3.12 has its own old setuptools, which would hide the host's (torch may need a newer one).
"$VPY" -m pip uninstall -q -y setuptools >/dev/null 2>&1
# --system-site-packages shows the base interpreter's packages only: where PYTHON is itself a
# venv's, a .pth file shows the venv's too (the host's torch, wherever it lies).
"$PYTHON" -c "import site; print('\n'.join(site.getsitepackages() + [site.getusersitepackages()] * site.ENABLE_USER_SITE))" \
  > "$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_gpu_check_host.pth" || exit 2
# The wheelhouse's requirements.txt with pip's resolver (the host's torch, torchvision, numpy and
# pillow satisfy their lines; the rest comes from the wheelhouse), then this project without its
# declared requirements (they name mlflow, which would bring the UI and pyarrow).
"$VPY" -m pip install -q --no-index --find-links "$WHEELHOUSE" -r "$WHEELHOUSE/requirements.txt" \
  || { echo "a requirement is missing from the host and the wheelhouse (for torchvision, numpy or pillow:" \
       "make wheels ... TORCHVISION=<the version matching the host's torch>)"; exit 2; }
"$VPY" -m pip install -q --no-index --find-links "$WHEELHOUSE" --no-deps latent-models || exit 2
"$VPY" -c "import latent_models, mlflow, torch; print('latent-models', latent_models.__version__, '| mlflow', \
mlflow.__version__, '| torch', torch.__version__)" || exit 2

export MLFLOW_TRACKING_URI="sqlite:///$TMP/mlflow.db" LATENT_MODELS_CHECKPOINT_DIR="$TMP/checkpoints"
export GIT_PYTHON_REFRESH=quiet MLFLOW_ENABLE_ASYNC_LOGGING=false
cd "$TMP" || exit 2

step "1. cuda-marked tests"
(cd "$REPO" && timeout 180 "$VPY" -m pytest -q -m cuda -p no:cacheprovider --basetemp "$TMP/pytest" \
  tests/test_device.py) \
  || fail "cuda-marked tests"

step "2. default main on the GPU, bf16"
LATENT_MODELS_DATA_DIR=$DATA_DIR timeout 240 "$VPY" - <<'EOF' || fail "default main on the GPU"
import os, time
from latent_models.config import MainConfig
from latent_models.training.main import run_main

started = time.perf_counter()
result = run_main(MainConfig(data_dir=os.environ["LATENT_MODELS_DATA_DIR"], download=False, device="cuda",
                             precision="bf16", experiment_name="gpu-check"))
wall = time.perf_counter() - started
ae, vae = result["runs"]["ae"], result["runs"]["vae"]
train = ae["train_seconds"] + vae["train_seconds"]
print(f"\nmain wall time {wall:.0f} s, of which training {train:.1f} s (target <= 60 s: "
      f"{'met' if train <= 60 else 'MISSED'})")
print("| run | device | train (s) | train images/s | test result | CPU row (docs/results.md) |")
print("|---|---|---:|---:|---|---|")
print(f"| ae | cuda, bf16 | {ae['train_seconds']:.1f} | {ae['train_images_per_second']:.0f} | "
      f"PSNR {ae['test_psnr']:.2f} dB | 28.10 dB, 1274 images/s |")
print(f"| vae | cuda, bf16 | {vae['train_seconds']:.1f} | {vae['train_images_per_second']:.0f} | "
      f"-ELBO {vae['test_neg_elbo']:.2f} nats, IW-NLL {vae['test_iw_nll']:.2f} | 92.80 nats, 2692 images/s |")
dpsnr, delbo = ae["test_psnr"] - 28.10, vae["test_neg_elbo"] - 92.80
print(f"against the CPU: {dpsnr:+.2f} dB (within 0.1: {'yes' if abs(dpsnr) <= 0.1 else 'NO'}), "
      f"{delbo:+.2f} nats (within 0.5: {'yes' if abs(delbo) <= 0.5 else 'NO'})")
EOF

step "3. two processes over nccl"
if [ "$GPUS" -ge 2 ]; then
  timeout 180 "$TMP/venv/bin/latent-models" ae --data_dir "$DATA_DIR" --download false --epochs 1 --device cuda \
    --nproc_per_node 2 --register false --experiment_name gpu-check-ddp 2>&1 | tail -n 3 \
    || fail "2-process nccl run"
else
  echo "skipped: $GPUS GPU(s)"
fi

step "4. served denoiser on the GPU (p50 at batch 1 and 256)"
LATENT_MODELS_DEVICE=cuda PATH="$TMP/venv/bin:$PATH" timeout 200 "$VPY" "$REPO/benchmarks/serving.py" --repeat 0.5 \
  2>&1 | grep -E '^\| (batch|1|256) |torch|p50' || fail "serving benchmark"

step "done: $([ $STATUS = 0 ] && echo all steps passed || echo SOME STEPS FAILED)"
exit $STATUS
