"""ECS tasks (Fargate) and container images: the OCI registry and ECR's API, task definitions and tasks, and the
runners that start containers (bubblewrap locally, Pods on Kubernetes)."""
