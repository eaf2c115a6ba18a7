# aliasd in an image FROM scratch: one static binary and nothing else (no shell, no libc files).
#
# No base image can be pulled here, so there is no build stage: build the static binary first,
# then the image (the .dockerignore sends only that binary as the build context). The `dist`
# profile is the release build without debug info, which keeps the image small:
#
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --profile dist --target x86_64-unknown-linux-gnu --bin aliasd
#   docker build -t aliasd:local .
#
# Run it with a config mounted at /etc/aliasd/aliasd.toml; to discover containers, mount the
# Docker socket too (see examples/compose). The same binary serves `aliasd backend` and
# `aliasd probe`, which the example and the tests use as a tiny web app and an app client.
FROM scratch
COPY target/x86_64-unknown-linux-gnu/dist/aliasd /aliasd
EXPOSE 53/udp 53/tcp 5380/tcp
ENTRYPOINT ["/aliasd"]
CMD ["run", "--config", "/etc/aliasd/aliasd.toml"]
