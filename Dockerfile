# RLLI Studio for a Hugging Face Docker Space (or any container host).
FROM python:3.11-slim
RUN useradd -m -u 1000 user
WORKDIR /home/user/app
COPY --chown=user requirements.txt .
# torch first and pinned, then the rest (which pins the same torch)
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir -r requirements.txt
COPY --chown=user . .
USER user
ENV RLLI_HOST=0.0.0.0 RLLI_PORT=7860 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
EXPOSE 7860
CMD ["python", "app.py"]
