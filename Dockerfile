# One image for the workers and the web app. GPU workers need the host's NVIDIA runtime
# (the torch wheel pinned in requirements.txt carries its CUDA libraries).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Tesseract: the second OCR engine (`vitpro ocr --engine tesseract`)
RUN apt-get update -q && apt-get install -y -q --no-install-recommends tesseract-ocr && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps -e .

# Celery refuses to run as root with pickle; we use JSON, but run as a user anyway.
# No volume: a container keeps only its scratch folder and caches (VITPRO_HOME); the data are in S3.
RUN useradd --create-home vitpro
USER vitpro
ENTRYPOINT ["vitpro"]
CMD ["--help"]
