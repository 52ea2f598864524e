# syntax=docker/dockerfile:1
# The Edge Impulse Linux runner with its HTTP inference server, for compose.edge.yaml.
# node:22-bookworm-slim is published for linux/amd64 and linux/arm64; edge-impulse-linux pulls
# prebuilt sharp and koffi binaries for both, so no compiler is needed.
FROM node:22.12.0-bookworm-slim
RUN npm install --global --unsafe-perm edge-impulse-linux@1.25.2 \
 && npm cache clean --force
USER node
WORKDIR /home/node
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/api/info').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["edge-impulse-linux-runner"]
# the model is mounted at /models/model.eim (compose.edge.yaml); --api-key is not needed for it
CMD ["--model-file", "/models/model.eim", "--run-http-server", "8080"]
