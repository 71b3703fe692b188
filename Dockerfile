# One broker node; durable state lives on the /data volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY protocols ./protocols
RUN pip install --no-cache-dir .
COPY deploy/broker.toml /etc/broker/broker.toml
VOLUME /data
EXPOSE 1883 5672 5222 8080
ENTRYPOINT ["broker"]
CMD ["serve", "--config", "/etc/broker/broker.toml", "--data-dir", "/data"]
