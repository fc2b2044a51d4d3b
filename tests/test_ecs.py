"""ECS through boto3's ``ecs`` client against a real platform: task definitions, clusters, tasks run under bwrap by
the worker tier (tasks/api.py, tasks/engine.py, tasks/runner.py), their logs and their supervision."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kambda import bus, procs
from kambda.v1.invocation_pb2 import LogBatch
from tasks import engine as task_engine
from tasks import records, runner
from tests import images
from tests.conftest import Platform, alive, unique, wait_for
from tests.test_task_runner import busybox_rootfs


@pytest.fixture(scope="module")
def ecs(platform: Platform):  # type: ignore[no-untyped-def]
    return boto3.client("ecs", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}, read_timeout=60))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image in an OCI layout on this machine, as kambda's ``oci-layout:`` reference."""
    root = tmp_path_factory.mktemp("busybox-image")
    images.busybox_image(root, {"Cmd": ["sh"], "Env": ["FROM_IMAGE=yes", "PATH=/bin"], "WorkingDir": "/tmp"})
    return f"oci-layout:{root}:latest"


def register(ecs: Any, image: str, *containers: dict[str, Any], family: str | None = None, **task: Any) -> str:
    family = family or unique("fam")
    definitions = [{"image": image, "essential": True, **c} for c in containers]
    ecs.register_task_definition(family=family, containerDefinitions=definitions, **task)
    return family


def run(ecs: Any, family: str, **params: Any) -> str:
    answer = ecs.run_task(taskDefinition=family, launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}}, **params)
    assert answer["failures"] == []
    return str(answer["tasks"][0]["taskArn"])


def describe(ecs: Any, arn: str, cluster: str = "default") -> dict[str, Any]:
    tasks = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
    assert len(tasks) == 1
    return dict(tasks[0])


def wait_status(ecs: Any, arn: str, status: str, timeout: float = 60.0, cluster: str = "default") -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(describe(ecs, arn, cluster))
        return bool(found["lastStatus"] == status)

    wait_for(reached, timeout=timeout, interval=0.02, what=f"task {arn} to be {status}")
    return found


def container(task: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(c for c in task["containers"] if c["name"] == name))


def log_texts(platform: Platform, family: str, want: str, timeout: float = 30.0) -> list[tuple[str, str]]:
    """(log stream, line) of every record of the family's logs, read once ``want`` is among them."""

    async def read() -> list[tuple[str, str]]:
        nc = await bus.connect(platform.nats_url(), "test-ecs-logs")
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + timeout
            while True:
                found: list[tuple[str, str]] = []
                sub = await js.subscribe(task_engine.logs_subject(family), ordered_consumer=True)
                try:
                    while True:
                        try:
                            msg = await sub.next_msg(timeout=0.5)
                        except TimeoutError:
                            break
                        for record in LogBatch.FromString(msg.data).records:
                            found.append((record.environment_id, record.text.rstrip("\n")))
                finally:
                    await sub.unsubscribe()
                if any(line == want for _, line in found) or time.monotonic() > deadline:
                    return found
        finally:
            await nc.close()

    return asyncio.run(read())


def test_exit_codes_are_reported_exactly(ecs: Any, image: str) -> None:
    family = register(ecs, image, {"name": "main", "command": ["sh", "-c", "exit 0"]},
                      requiresCompatibilities=["FARGATE"], cpu="256", memory="512", networkMode="awsvpc")
    zero = run(ecs, family)
    failing = register(ecs, image, {"name": "main", "command": ["sh", "-c", "exit 3"]})
    three = run(ecs, failing, startedBy="tester")
    done = wait_status(ecs, zero, "STOPPED")
    assert container(done, "main")["exitCode"] == 0
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert done["desiredStatus"] == "STOPPED"
    for key in ("createdAt", "startedAt", "stoppingAt", "stoppedAt", "pullStartedAt", "pullStoppedAt"):
        assert key in done, key
    assert done["createdAt"] <= done["startedAt"] <= done["stoppedAt"]
    assert done["cpu"] == "256" and done["memory"] == "512" and done["launchType"] == "FARGATE"
    failed = wait_status(ecs, three, "STOPPED")
    assert container(failed, "main")["exitCode"] == 3
    assert container(failed, "main")["lastStatus"] == "STOPPED"
    assert failed["startedBy"] == "tester"
    assert failed["group"] == f"family:{failing}"


def test_image_config_overrides_and_logs(ecs: Any, image: str, platform: Platform) -> None:
    family = register(ecs, image, {
        "name": "app", "command": ["sh", "-c", "echo $FROM_IMAGE $DEF $OVER $(pwd); echo to-stderr >&2"],
        "environment": [{"name": "DEF", "value": "def"}, {"name": "OVER", "value": "def"}],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/test", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "pre"}}})
    arn = run(ecs, family, overrides={"containerOverrides": [
        {"name": "app", "environment": [{"name": "OVER", "value": "over"}]}]})
    done = wait_status(ecs, arn, "STOPPED")
    assert container(done, "app")["exitCode"] == 0
    task_id = arn.rsplit("/", 1)[1]
    lines = log_texts(platform, family, "yes def over /tmp")
    assert (f"pre/app/{task_id}", "yes def over /tmp") in lines
    assert (f"pre/app/{task_id}", "to-stderr") in lines
    # A command override replaces the definition's.
    arn = run(ecs, family, overrides={"containerOverrides": [{"name": "app", "command": ["sh", "-c", "exit 9"]}]})
    assert container(wait_status(ecs, arn, "STOPPED"), "app")["exitCode"] == 9


def test_stop_task_sends_sigterm_then_reports(ecs: Any, image: str, platform: Platform) -> None:
    family = register(ecs, image, {"name": "main", "stopTimeout": 30, "command": [
        "sh", "-c", "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.1; done"]})
    arn = run(ecs, family)
    running = wait_status(ecs, arn, "RUNNING")
    assert container(running, "main")["lastStatus"] == "RUNNING"
    log_texts(platform, family, "ready")  # the trap is set
    stopping = ecs.stop_task(task=arn, reason="tests say stop")["task"]
    assert stopping["desiredStatus"] == "STOPPED"
    assert arn in ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]
    done = wait_status(ecs, arn, "STOPPED")
    assert container(done, "main")["exitCode"] == 5
    assert done["stopCode"] == "UserInitiated"
    assert done["stoppedReason"] == "tests say stop"
    assert ("main/" + arn.rsplit("/", 1)[1], "got-term") in log_texts(platform, family, "got-term")


def test_stop_timeout_then_sigkill(ecs: Any, image: str, platform: Platform) -> None:
    family = register(ecs, image, {"name": "main", "stopTimeout": 1, "command": [
        "sh", "-c", "trap 'echo ignored' TERM; echo ready; while true; do sleep 0.1; done"]})
    arn = run(ecs, family)
    wait_status(ecs, arn, "RUNNING")
    log_texts(platform, family, "ready")  # the trap is set
    ecs.stop_task(task=arn)
    done = wait_status(ecs, arn, "STOPPED")
    assert container(done, "main")["exitCode"] == 137
    assert done["stoppedReason"] == "Task stopped by user"
    assert "ignored" in [line for _, line in log_texts(platform, family, "ignored")]


def test_essential_app_with_a_non_essential_sidecar(ecs: Any, image: str, platform: Platform) -> None:
    family = register(
        ecs, image,
        {"name": "sidecar", "essential": False, "command": [
            "sh", "-c", "trap 'echo sidecar-term; exit 0' TERM; echo sidecar-up; while true; do sleep 0.1; done"]},
        {"name": "app", "dependsOn": [{"containerName": "sidecar", "condition": "START"}],
         "command": ["sh", "-c", "echo app-done; exit 4"]})
    arn = run(ecs, family)
    done = wait_status(ecs, arn, "STOPPED")
    assert container(done, "app")["exitCode"] == 4
    assert container(done, "sidecar")["exitCode"] == 0  # SIGTERMed when the essential one exited: its trap ran
    assert done["stopCode"] == "EssentialContainerExited"
    texts = [line for _, line in log_texts(platform, family, "sidecar-term")]
    assert "app-done" in texts and "sidecar-term" in texts


def test_a_non_essential_container_that_exits_does_not_stop_the_task(ecs: Any, image: str) -> None:
    family = register(
        ecs, image,
        {"name": "init", "essential": False, "command": ["sh", "-c", "exit 2"]},
        {"name": "app", "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}],
         "command": ["sh", "-c", "exit 0"]})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    assert container(done, "init")["exitCode"] == 2
    assert container(done, "app")["exitCode"] == 0
    # SUCCESS: a dependency that fails keeps its dependant from starting.
    family = register(
        ecs, image,
        {"name": "init", "essential": False, "command": ["sh", "-c", "exit 2"]},
        {"name": "app", "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
         "command": ["sh", "-c", "exit 0"]})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    assert "exitCode" not in container(done, "app")
    assert "dependency init exited 2" in container(done, "app")["reason"]


def test_memory_limit_kills_the_container(ecs: Any, image: str) -> None:
    family = register(ecs, image, {"name": "hog", "memory": 32, "command": [
        "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=100000"]})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    hog = container(done, "hog")
    assert hog["exitCode"] == 137
    assert hog["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert hog["memory"] == "32"


def test_an_image_from_the_built_in_registry(ecs: Any, platform: Platform, tmp_path: Path) -> None:
    layout = images.busybox_image(tmp_path / "img", {"Entrypoint": ["sh", "-c"], "Cmd": ["echo $GREETING; exit 6"],
                                                     "Env": ["GREETING=from-the-registry"]})
    repo = unique("ecs-test")
    images.push(platform.url, repo, "v1", layout)
    uri = f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{repo}:v1"
    family = register(ecs, uri, {"name": "main"})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    main = container(done, "main")
    assert main["exitCode"] == 6
    assert main["imageDigest"].startswith("sha256:")
    assert "from-the-registry" in [line for _, line in log_texts(platform, family, "from-the-registry")]
    # An image of another registry is refused with the reason.
    family = register(ecs, "docker.io/library/busybox:latest", {"name": "main"})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    assert done["stopCode"] == "TaskFailedToStart"
    assert "CannotPullContainerError" in done["stoppedReason"] and "docker.io" in done["stoppedReason"]


def test_an_image_that_cannot_be_resolved_fails_to_start(ecs: Any, tmp_path: Path) -> None:
    family = register(ecs, f"oci-layout:{tmp_path}/nothing:latest", {"name": "main", "command": ["true"]})
    done = wait_status(ecs, run(ecs, family), "STOPPED")
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotPullContainerError")
    assert "exitCode" not in container(done, "main")


def test_list_tasks_filters(ecs: Any, image: str) -> None:
    cluster = unique("cl")
    ecs.create_cluster(clusterName=cluster)
    family = register(ecs, image, {"name": "main", "command": ["sh", "-c", "while true; do sleep 0.1; done"]})
    other = register(ecs, image, {"name": "main", "command": ["true"]})
    by = unique("who")
    long_runs = ecs.run_task(cluster=cluster, taskDefinition=family, count=2, startedBy=by)["tasks"]
    arns = [t["taskArn"] for t in long_runs]
    short = ecs.run_task(cluster=cluster, taskDefinition=other)["tasks"][0]["taskArn"]
    wait_status(ecs, short, "STOPPED", cluster=cluster)
    for arn in arns:
        wait_status(ecs, arn, "RUNNING", cluster=cluster)
    assert sorted(ecs.list_tasks(cluster=cluster)["taskArns"]) == sorted(arns)
    assert sorted(ecs.list_tasks(cluster=cluster, startedBy=by)["taskArns"]) == sorted(arns)
    assert ecs.list_tasks(cluster=cluster, family=other)["taskArns"] == []
    assert ecs.list_tasks(cluster=cluster, family=other, desiredStatus="STOPPED")["taskArns"] == [short]
    page = ecs.list_tasks(cluster=cluster, maxResults=1)
    assert len(page["taskArns"]) == 1 and page["nextToken"]
    rest = ecs.list_tasks(cluster=cluster, maxResults=1, nextToken=page["nextToken"])
    assert sorted(page["taskArns"] + rest["taskArns"]) == sorted(arns)
    assert arns[0] not in ecs.list_tasks()["taskArns"]  # another cluster's
    described = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert described["runningTasksCount"] == 2
    with pytest.raises(ClientError) as caught:
        ecs.delete_cluster(cluster=cluster)
    assert caught.value.response["Error"]["Code"] == "ClusterContainsTasksException"
    for arn in arns:
        ecs.stop_task(cluster=cluster, task=arn)
    for arn in arns:
        assert wait_status(ecs, arn, "STOPPED", cluster=cluster)["stopCode"] == "UserInitiated"
    assert ecs.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_task_definitions(ecs: Any, image: str) -> None:
    family = unique("defs")
    first = ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "a", "image": image, "command": ["true"], "portMappings": [{"containerPort": 8080}],
         "healthCheck": {"command": ["CMD-SHELL", "true"]}, "cpu": 128, "memory": 64}],
        cpu="0.25 vCPU", memory="0.5 GB", tags=[{"key": "team", "value": "x"}])["taskDefinition"]
    assert first["revision"] == 1 and first["status"] == "ACTIVE"
    assert first["cpu"] == "256" and first["memory"] == "512"
    assert first["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}]
    second = ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "a", "image": image, "command": ["true"]}])["taskDefinition"]
    assert second["revision"] == 2
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    assert ecs.describe_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]["revision"] == 1
    described = ecs.describe_task_definition(taskDefinition=first["taskDefinitionArn"], include=["TAGS"])
    assert described["tags"] == [{"key": "team", "value": "x"}]
    assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == [
        first["taskDefinitionArn"], second["taskDefinitionArn"]]
    assert family in ecs.list_task_definition_families(familyPrefix=family)["families"]
    gone = ecs.deregister_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]
    assert gone["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1
    assert ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"] == [
        second["taskDefinitionArn"]]
    with pytest.raises(ClientError) as caught:
        ecs.run_task(taskDefinition=f"{family}:2")
    assert caught.value.response["Error"]["Code"] == "ClientException"


def error_code(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return str(caught.value.response["Error"]["Code"])


def test_errors(ecs: Any, image: str) -> None:
    family = register(ecs, image, {"name": "main", "command": ["true"]})
    assert error_code(ecs.run_task, taskDefinition=family, cluster="no-such-cluster") == "ClusterNotFoundException"
    assert error_code(ecs.describe_tasks, cluster="no-such-cluster", tasks=["x"]) == "ClusterNotFoundException"
    assert error_code(ecs.run_task, taskDefinition=unique("nope")) == "ClientException"
    assert error_code(ecs.describe_task_definition, taskDefinition=unique("nope")) == "ClientException"
    assert error_code(ecs.run_task, taskDefinition=family, count=11) == "InvalidParameterException"
    assert error_code(ecs.run_task, taskDefinition=family, overrides={
        "containerOverrides": [{"name": "other"}]}) == "InvalidParameterException"
    assert error_code(ecs.stop_task, task="0123456789abcdef") == "InvalidParameterException"
    assert error_code(ecs.register_task_definition, family="bad name!", containerDefinitions=[
        {"name": "a", "image": image}]) == "ClientException"
    assert error_code(ecs.register_task_definition, family=unique("f"), containerDefinitions=[]) == "ClientException"
    assert error_code(ecs.register_task_definition, family=unique("f"), containerDefinitions=[
        {"name": "a", "image": image, "essential": False}]) == "ClientException"
    assert error_code(ecs.register_task_definition, family=unique("f"), containerDefinitions=[
        {"name": "a", "image": image, "dependsOn": [{"containerName": "b", "condition": "START"}]}]) == \
        "ClientException"
    assert error_code(ecs.register_task_definition, family=unique("f"), requiresCompatibilities=["FARGATE"],
                      containerDefinitions=[{"name": "a", "image": image}]) == "ClientException"
    missing = "arn:aws:ecs:us-east-1:000000000000:task/default/00000000000000000000000000000000"
    answer = ecs.describe_tasks(tasks=[missing])
    assert answer["tasks"] == [] and answer["failures"] == [{"arn": missing, "reason": "MISSING"}]


def test_clusters(ecs: Any) -> None:
    name = unique("cl")
    made = ecs.create_cluster(clusterName=name, tags=[{"key": "k", "value": "v"}])["cluster"]
    assert made["clusterArn"] == f"arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
    assert made["status"] == "ACTIVE"
    assert ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"] == made["clusterArn"]
    listed = ecs.list_clusters()["clusterArns"]
    assert made["clusterArn"] in listed and "arn:aws:ecs:us-east-1:000000000000:cluster/default" in listed
    described = ecs.describe_clusters(clusters=[name, made["clusterArn"], "absent"])
    assert [c["clusterName"] for c in described["clusters"]] == [name, name]
    assert described["failures"] == [{"arn": "arn:aws:ecs:us-east-1:000000000000:cluster/absent",
                                      "reason": "MISSING"}]
    assert ecs.describe_clusters()["clusters"][0]["clusterName"] == "default"
    ecs.delete_cluster(cluster=name)
    assert error_code(ecs.delete_cluster, cluster=name) == "ClusterNotFoundException"
    assert error_code(ecs.create_cluster, clusterName="no spaces") == "InvalidParameterException"


def test_a_dead_workers_tasks_are_marked_stopped(platform: Platform, tmp_path: Path) -> None:
    """A task whose owner stopped heartbeating is STOPPED by a replica that sweeps (the clock injected), and a
    container of it still running on this machine is killed; a task whose owner is alive is left alone."""
    rootfs = busybox_rootfs(tmp_path / "rootfs")

    async def scenario() -> dict[str, tuple[dict[str, Any] | None, runner.Exit | None]]:
        nc = await bus.connect(platform.nats_url(), "test-ecs-sweep")
        boxes: dict[str, runner.Container] = {}
        try:
            js = nc.jetstream()
            await records.ensure(js)
            store = records.Records(js)
            now = time.time()
            arns = records.Arns("us-east-1", "000000000000")
            keys = {}
            for kind, beat in (("dead", now - 3600), ("alive", now + 3600)):
                owner, task_id = unique(kind), records.new_task_id()
                arn = arns.task("default", task_id)
                keys[kind] = task_id
                box = runner.Container(runner.ContainerSpec("main", rootfs, command=["sleep", "300"], environment={
                    task_engine.TASK_ARN_ENV: arn}))
                await box.start()
                boxes[kind] = box
                await store.workers.put(owner, {"at": beat})
                await store.tasks.create(task_id, {
                    "taskArn": arn, "clusterArn": arns.cluster("default"),
                    "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "createdAt": now, "version": 1,
                    "containers": [{"name": "main", "lastStatus": "RUNNING", "taskArn": arn}],
                    records.PRIVATE: {"id": task_id, "owner": owner, "family": "f", "revision": 1,
                                      "host": runner.host_id(), "pids": {"main": box.pids}}})
            sweeper = task_engine.TaskEngine(nc, arns, task_engine.Images(Path("/nonexistent")),
                                             clock=lambda: now + 60, lease_s=10, worker_id="sweeper")
            sweeper.records = store
            await sweeper.sweep()
            dead_exit = await asyncio.wait_for(boxes["dead"].wait(), 30)
            alive_running = boxes["alive"].running
            return {"dead": ((await store.tasks.get(keys["dead"]))[0], dead_exit),
                    "alive": ((await store.tasks.get(keys["alive"]))[0], None if alive_running else runner.Exit(-1))}
        finally:
            for box in boxes.values():
                box.kill()
                await box.wait()
            await nc.close()

    found = asyncio.run(scenario())
    dead, dead_exit = found["dead"]
    alive, alive_exit = found["alive"]
    assert dead is not None and alive is not None
    assert dead["lastStatus"] == "STOPPED" and dead["stopCode"] == "TerminationNotice"
    assert "stopped heartbeating" in dead["stoppedReason"]
    assert dead["containers"][0]["lastStatus"] == "STOPPED"
    assert dead_exit == runner.Exit(137)  # its left-over container was killed
    assert alive["lastStatus"] == "RUNNING"
    assert alive_exit is None  # and the live worker's container was not


def test_a_worker_killed_leaves_no_orphans(image: str, tmp_path: Path) -> None:
    """kill -9 of the worker that runs a task: its container dies with it, and the restarted worker marks the task
    STOPPED once the dead one's lease (1 s here) has run out."""
    platform = Platform(tmp_path / "state", env={"KAMBDA_WORKER_TASK_LEASE": "1"}).start()
    try:
        assert platform.proc is not None
        client = boto3.client("ecs", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
        family = register(client, image, {"name": "main", "command": ["sh", "-c", "while true; do sleep 0.1; done"]})
        arn = run(client, family)
        wait_status(client, arn, "RUNNING")
        (worker,) = procs.service_pids(platform.proc.pid, "worker")
        inside = procs.descendants(worker)
        assert inside  # bwrap and the container's processes
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in inside), what="the container to die with its worker")
        done = wait_status(client, arn, "STOPPED")
        assert done["stopCode"] == "TerminationNotice"
        assert "stopped heartbeating" in done["stoppedReason"]
        assert procs.service_pids(platform.proc.pid, "worker") != [worker]
    finally:
        platform.stop()


def test_task_state_change_events(ecs: Any, image: str, platform: Platform) -> None:
    """Every status change goes to the default event bus as AWS's "ECS Task State Change"."""
    family = register(ecs, image, {"name": "main", "command": ["sh", "-c", "exit 3"]})

    async def watch() -> list[dict[str, Any]]:
        nc = await bus.connect(platform.nats_url(), "test-ecs-events")
        seen: list[dict[str, Any]] = []

        async def on_msg(msg: Any) -> None:
            event = orjson.loads(msg.data)
            if event.get("source") == "aws.ecs":
                seen.append(event)

        # Core NATS sees what is published on the bus's subject, whoever consumes the stream.
        sub = await nc.subscribe(bus.events_subject("default"), cb=on_msg)
        try:
            arn = await asyncio.get_running_loop().run_in_executor(None, lambda: run(ecs, family))
            deadline = time.monotonic() + 60
            while not any(e["detail"]["taskArn"] == arn and e["detail"]["lastStatus"] == "STOPPED" for e in seen):
                assert time.monotonic() < deadline, "no STOPPED event"
                await asyncio.sleep(0.05)
            return [e for e in seen if e["detail"]["taskArn"] == arn]
        finally:
            await sub.unsubscribe()
            await nc.close()

    events = asyncio.run(watch())
    statuses = [e["detail"]["lastStatus"] for e in events]
    assert statuses[0] == "PENDING" and statuses[-1] == "STOPPED" and "RUNNING" in statuses
    last = events[-1]
    assert last["detail-type"] == "ECS Task State Change" and last["source"] == "aws.ecs"
    assert last["resources"] == [last["detail"]["taskArn"]]
    assert last["detail"]["containers"][0]["exitCode"] == 3
    assert last["detail"]["stoppedAt"].endswith("Z")
    assert records.PRIVATE not in last["detail"]


def test_task_start_latency(ecs: Any, image: str) -> None:
    """Not an assertion on time: prints RunTask-to-RUNNING over 20 runs (NOTES-tasks.md quotes it)."""
    family = register(ecs, image, {"name": "main", "command": ["sh", "-c", "while true; do sleep 0.1; done"]})
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        arn = run(ecs, family)
        wait_status(ecs, arn, "RUNNING")
        samples.append((time.perf_counter() - started) * 1000)
        ecs.stop_task(task=arn)
    samples.sort()
    print(f"\nRunTask to RUNNING (polled DescribeTasks): p50 {samples[10]:.0f} ms, min {samples[0]:.0f} ms, "
          f"max {samples[-1]:.0f} ms")
