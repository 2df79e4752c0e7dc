"""Browser pages of the images, volumes and networks of the hosts. The page is a shell: its
script (static/dockmon/engine-objects.js) reads the live lists from the API, which checks every
right again; the page only says which hosts the user may act on, to offer the buttons."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from containers.permissions import has_host_perm, visible_hosts

KINDS = {"images": "Images", "volumes": "Volumes", "networks": "Networks"}


def _page(request, kind: str):
    hosts = list(visible_hosts(request.user).order_by("name"))
    deploy = [str(h.pk) for h in hosts if has_host_perm(request.user, "deploy", h)]
    operate = [str(h.pk) for h in hosts if has_host_perm(request.user, "operate", h)]
    return render(request, "containers/engine_objects.html", {
        "kind": kind, "title": KINDS[kind], "hosts": hosts, "nav": kind,
        "host_names": {str(h.pk): h.name for h in hosts}, "deploy_hosts": deploy, "operate_hosts": operate,
        "deployable": [h for h in hosts if str(h.pk) in deploy], "pullable": [h for h in hosts if str(h.pk) in operate],
    })


@login_required
def images_page(request):
    return _page(request, "images")


@login_required
def volumes_page(request):
    return _page(request, "volumes")


@login_required
def networks_page(request):
    return _page(request, "networks")
