# The operator's image: built with the Rust toolchain, run on distroless (glibc and libgcc, no
# shell, no package manager) as the unprivileged user 65532. The binary uses rustls, so the
# image needs no OpenSSL. Build from the repository root:
#
#   docker build -t platform-operator:0.1.0 .
#
# The Helm chart's default image is platform-operator:<appVersion>; push the image where your
# cluster pulls from and set image.repository (and image.tag or image.digest) accordingly.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: cargo resolves every member's manifest even when building one package.
COPY . .
RUN cargo build --release -p platform-operator --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/platform-operator /usr/local/bin/platform-operator
USER 65532:65532
# The chart and deploy/operator/operator.yaml pass `run` with their own flags.
ENTRYPOINT ["/usr/local/bin/platform-operator"]
CMD ["run"]
