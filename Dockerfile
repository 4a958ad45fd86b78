# gomailpy: one image for the API and the pipeline nodes (the command picks the role).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gomailpy gomailpy
COPY api api
COPY pipeline pipeline
COPY gomailpy_cli gomailpy_cli
COPY webclient webclient
COPY config config
# Only the production package: the local stack (local/, with aiosmtpd and moto) stays out.
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000 9100
CMD ["gomail", "api", "--config", "config/docker.yaml"]
