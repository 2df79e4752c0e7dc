"""API of the images, volumes and networks of the hosts (read live from their engines).

Who may do what (design: "Permission actions"), always on the host the object lives on:
listing and reading need `view`; pulling an image needs `operate`; creating, removing,
pruning, connecting and disconnecting need `deploy`. A host the user may not view, and anything
on it, does not exist for them (404); a visible host without the right is 403. Every change is
audited (the API call's audit row names the host and the change) and written to the event log.
"""

from __future__ import annotations

import uuid

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from accounts import audit
from containers import engine_objects, images, tasks
from containers.api.base import VisibleViewSetMixin
from containers.api.serializers_engine import (
    EngineListSerializer,
    ImageDetailSerializer,
    ImageListQuerySerializer,
    ImagePruneResultSerializer,
    ImagePruneSerializer,
    InUseSerializer,
    ListQuerySerializer,
    MembershipSerializer,
    NetworkSerializer,
    PruneSerializer,
    PullAcceptedSerializer,
    PullSerializer,
    RemoveImageQuerySerializer,
    VolumeListQuerySerializer,
    VolumePruneResultSerializer,
    VolumeSerializer,
)
from containers.choices import HostStatus
from containers.engine_objects import ObjectError
from containers.models import Container
from containers.permissions import has_host_perm, visible_hosts

HOST_ID = r"[0-9a-fA-F-]{36}"
SHORT_ID_KEY = rf"{HOST_ID}:[0-9a-f]{{12}}"
NAME_KEY = rf"{HOST_ID}:[a-zA-Z0-9][a-zA-Z0-9_.-]*"


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def host_for(request, host_id, action: str):
    """The host `host_id` if the user may view it (else 404), holding `action` on it (else 403)."""
    try:
        host_id = uuid.UUID(str(host_id))
    except ValueError:
        raise NotFound("No such host.") from None
    host = visible_hosts(request.user).filter(pk=host_id).first()
    if host is None:
        raise NotFound("No such host.")
    if action != "view" and not has_host_perm(request.user, action, host):
        raise PermissionDenied(f"You may not {action} on {host.name}.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        audit.note(request, obj=host)
    return host


def _split(pk: str) -> tuple[str, str]:
    host_id, _, rest = str(pk).partition(":")
    return host_id, rest


def error_response(exc: ObjectError) -> Response:
    body: dict = {"detail": str(exc)}
    if exc.status == 400 and exc.field:
        body = {exc.field: [str(exc)]}
    if exc.users:
        body["containers"] = exc.users
    return Response(body, status=exc.status)


def live_list(request, query: dict, fetch) -> Response:
    """One live list over the hosts the user may view (or the one named by `host`): hosts whose
    engine does not answer are named in `errors` instead of failing the whole list."""
    hosts = visible_hosts(request.user).order_by("name")
    named = bool(query.get("host"))
    if named:
        hosts = hosts.filter(pk=query["host"])
    results, errors = [], []
    for host in hosts.filter(enabled=True):
        if host.status == HostStatus.OFFLINE and not named:
            # Asking each engine the monitor finds offline would hold the whole list for a timeout
            # per host; naming the host asks it all the same.
            errors.append({"host": str(host.pk), "detail": f"Host {host.name} is offline (the monitor cannot reach it)."})
            continue
        try:
            results.extend(fetch(host))
        except ObjectError as exc:
            errors.append({"host": str(host.pk), "detail": str(exc)})
    return Response({"count": len(results), "results": results, "errors": errors})


class _OneListObject(AutoSchema):
    """A list here answers one object (`count`, `results`, `errors`), not an array of them."""

    def _is_list_view(self, serializer=None) -> bool:
        return False


class _EngineObjectViewSet(VisibleViewSetMixin, viewsets.ViewSet):
    # Checked per host by host_for(): there are no rows to filter.
    permission_classes = []
    schema = _OneListObject()


class ImageViewSet(_EngineObjectViewSet):
    lookup_value_regex = SHORT_ID_KEY

    @extend_schema(operation_id="images_list", parameters=[ImageListQuerySerializer], responses={200: EngineListSerializer})
    def list(self, request):
        """Images of every host the user may view (`view`), with the containers that use each."""
        query = _valid(ImageListQuerySerializer, request.query_params)
        return live_list(request, query, lambda host: images.list_images(host, dangling=query["dangling"], search=query["search"]))

    @extend_schema(responses={200: ImageDetailSerializer})
    def retrieve(self, request, pk=None):
        """One image with its configuration and history (layers); needs `view` on the host."""
        host_id, short_id = _split(pk)
        host = host_for(request, host_id, "view")
        try:
            return Response(ImageDetailSerializer(images.image_detail(host, short_id)).data)
        except ObjectError as exc:
            return error_response(exc)

    @extend_schema(parameters=[RemoveImageQuerySerializer], responses={204: None, 409: InUseSerializer})
    def destroy(self, request, pk=None):
        """Remove an image (`deploy` on the host). Refused (409, users named) while a container
        uses it; `force=true` removes it from stopped containers' reach, never a running one's."""
        host_id, short_id = _split(pk)
        host = host_for(request, host_id, "deploy")  # engine-writing: guarded by `deploy`
        force = _valid(RemoveImageQuerySerializer, request.query_params)["force"]
        try:
            images.remove_image(host, short_id, force=force, actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(status=http.HTTP_204_NO_CONTENT)


class VolumeViewSet(_EngineObjectViewSet):
    lookup_value_regex = NAME_KEY

    @extend_schema(operation_id="volumes_list", parameters=[VolumeListQuerySerializer], responses={200: EngineListSerializer})
    def list(self, request):
        """Volumes of every host the user may view, with the containers that mount each."""
        query = _valid(VolumeListQuerySerializer, request.query_params)
        return live_list(request, query, lambda host: engine_objects.list_volumes(host, with_sizes=query["size"]))

    @extend_schema(request=VolumeSerializer, responses={201: VolumeSerializer})
    def create(self, request):
        data = _valid(VolumeSerializer, request.data)
        host = host_for(request, data["host"], "deploy")  # engine-writing: guarded by `deploy`
        try:
            row = engine_objects.create_volume(host, data["name"], driver=data["driver"], labels=data["labels"], actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(VolumeSerializer(row).data, status=http.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: InUseSerializer})
    def destroy(self, request, pk=None):
        """Remove a volume (`deploy` on the host); refused (409, users named) while mounted."""
        host_id, name = _split(pk)
        host = host_for(request, host_id, "deploy")  # engine-writing: guarded by `deploy`
        try:
            engine_objects.remove_volume(host, name, actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(status=http.HTTP_204_NO_CONTENT)


class NetworkViewSet(_EngineObjectViewSet):
    lookup_value_regex = SHORT_ID_KEY

    @extend_schema(operation_id="networks_list", parameters=[ListQuerySerializer], responses={200: EngineListSerializer})
    def list(self, request):
        """Networks of every host the user may view, with their containers (address, aliases)."""
        query = _valid(ListQuerySerializer, request.query_params)
        return live_list(request, query, engine_objects.list_networks)

    @extend_schema(responses={200: NetworkSerializer})
    def retrieve(self, request, pk=None):
        host_id, short_id = _split(pk)
        host = host_for(request, host_id, "view")
        try:
            return Response(NetworkSerializer(engine_objects.network_detail(host, short_id)).data)
        except ObjectError as exc:
            return error_response(exc)

    @extend_schema(request=NetworkSerializer, responses={201: NetworkSerializer})
    def create(self, request):
        data = _valid(NetworkSerializer, request.data)
        host = host_for(request, data["host"], "deploy")  # engine-writing: guarded by `deploy`
        try:
            row = engine_objects.create_network(host, name=data["name"], driver=data["driver"], internal=data["internal"],
                                                subnet=data["subnet"], gateway=data["gateway"], labels=data["labels"], actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(NetworkSerializer(row).data, status=http.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: InUseSerializer})
    def destroy(self, request, pk=None):
        """Remove a network (`deploy` on the host); refused (409, users named) while in use."""
        host_id, short_id = _split(pk)
        host = host_for(request, host_id, "deploy")  # engine-writing: guarded by `deploy`
        try:
            engine_objects.remove_network(host, short_id, actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(status=http.HTTP_204_NO_CONTENT)

    def _membership(self, request, pk, connect: bool):
        host_id, short_id = _split(pk)
        host = host_for(request, host_id, "deploy")  # engine-writing: guarded by `deploy`
        data = _valid(MembershipSerializer, request.data)
        container = Container.objects.filter(pk=data["container"], host=host, removed_at__isnull=True).first()
        if container is None:
            return Response({"container": [f"No container {data['container']} on {host.name}."]}, status=400)
        try:
            row = engine_objects.change_membership(host, short_id, container, connect=connect, aliases=data["aliases"],
                                                   ipv4=data["ipv4"], actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(NetworkSerializer(row).data)

    @extend_schema(request=MembershipSerializer, responses={200: NetworkSerializer})
    @action(detail=True, methods=["post"], required_action="deploy")
    def connect(self, request, pk=None):
        """Connect a container of the same host (aliases, a static IPv4 address)."""
        return self._membership(request, pk, connect=True)

    @extend_schema(request=MembershipSerializer, responses={200: NetworkSerializer})
    @action(detail=True, methods=["post"], required_action="deploy")
    def disconnect(self, request, pk=None):
        return self._membership(request, pk, connect=False)


class HostObjectsViewSet(_EngineObjectViewSet):
    """The host-wide actions on its images and volumes (under /hosts/{id}/)."""

    lookup_value_regex = HOST_ID

    @extend_schema(request=PullSerializer, responses={202: PullAcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="images/pull", required_action="operate")
    def pull_image(self, request, pk=None):
        """Pull an image (`operate` on the host): asked of the registry first (a missing image is
        404 with the registry's answer), then pulled by a worker; progress as `image.pull`
        messages on the WebSocket, the outcome in the event log."""
        host = host_for(request, pk, "operate")  # engine-writing: guarded by `operate`
        ref = _valid(PullSerializer, request.data)["image"]
        try:
            images.check_pullable(host, ref)
        except ObjectError as exc:
            return error_response(exc)
        result = tasks.pull_image.delay(str(host.pk), ref, request.user.pk)
        audit.note(request, action="image.pull", changes={"image": ref})
        return Response({"host": str(host.pk), "image": ref, "task": getattr(result, "id", None)}, status=http.HTTP_202_ACCEPTED)

    @extend_schema(request=ImagePruneSerializer, responses={200: ImagePruneResultSerializer})
    @action(detail=True, methods=["post"], url_path="images/prune", required_action="deploy")
    def prune_images(self, request, pk=None):
        """Remove unused images (`deploy`); `dry_run` lists exactly what a real run removes."""
        host = host_for(request, pk, "deploy")  # engine-writing: guarded by `deploy`
        data = _valid(ImagePruneSerializer, request.data)
        try:
            answer = images.prune_images(host, dangling_only=data["dangling_only"], dry_run=data["dry_run"], labels=data["labels"],
                                         actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(ImagePruneResultSerializer(answer).data)

    @extend_schema(request=PruneSerializer, responses={200: VolumePruneResultSerializer})
    @action(detail=True, methods=["post"], url_path="volumes/prune", required_action="deploy")
    def prune_volumes(self, request, pk=None):
        """Remove volumes no container mounts (`deploy`); `dry_run` lists exactly what a real run removes."""
        host = host_for(request, pk, "deploy")  # engine-writing: guarded by `deploy`
        data = _valid(PruneSerializer, request.data)
        try:
            answer = engine_objects.prune_volumes(host, dry_run=data["dry_run"], labels=data["labels"], actor=request)
        except ObjectError as exc:
            return error_response(exc)
        return Response(VolumePruneResultSerializer(answer).data)
