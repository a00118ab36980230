# The loss-worker sandbox image: a Python interpreter, torch, numpy and scipy, nothing else.
# Nothing is downloaded during the build: the base image is a build argument (built
# locally, e.g. from debootstrap, when no registry is reachable) and Python packages come
# from the wheelhouse in the build context, which `harness image build` prepares on the host.
# The worker script, its wire format (wire.py) and the submission are bind-mounted read-only at run time.
ARG BASE_IMAGE=harness-base:bookworm
FROM ${BASE_IMAGE}
COPY wheelhouse /tmp/wheelhouse
RUN python3 "$(ls /tmp/wheelhouse/pip-*.whl)/pip" install --no-index --find-links /tmp/wheelhouse \
        --break-system-packages --no-cache-dir --root-user-action=ignore torch numpy scipy \
    && rm -rf /tmp/wheelhouse \
    && python3 -c "import numpy, scipy.optimize, scipy.linalg, scipy.special, torch; torch.ones(1)" \
    && mkdir -p /sandbox
USER 65534:65534
WORKDIR /tmp
