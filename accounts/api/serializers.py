from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from accounts.models import APIToken, AuditEntry
from accounts.roles import role_names
from dockmon_site.api import SecretField

User = get_user_model()


class APITokenSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(read_only=True)
    expires_in_days = serializers.IntegerField(write_only=True, required=False, min_value=1, max_value=3650)

    class Meta:
        model = APIToken
        fields = ["id", "name", "prefix", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at", "expires_in_days"]
        read_only_fields = ["created_at", "expires_at", "last_used_at", "revoked_at"]

    def create(self, validated_data):
        days = validated_data.pop("expires_in_days", None)
        expires_at = timezone.now() + timedelta(days=days) if days else None
        token, raw = APIToken.issue(
            self.context["request"].user,
            name=validated_data.get("name") or "default",
            expires_at=expires_at,
            read_only=validated_data.get("read_only", False),
        )
        token.raw = raw
        return token

    def to_representation(self, instance):
        data = super().to_representation(instance)
        raw = getattr(instance, "raw", None)
        if raw:
            data["token"] = raw
        return data


class TokenObtainSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"}, trim_whitespace=False)
    name = serializers.CharField(required=False, max_length=100, default="api")
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650)
    read_only = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        user = authenticate(self.context.get("request"), username=attrs["username"], password=attrs["password"])
        if user is None or not user.is_active:
            raise serializers.ValidationError({"non_field_errors": ["Unable to log in with the given credentials."]})
        attrs["user"] = user
        return attrs

    def create(self, validated_data):
        days = validated_data.get("expires_in_days")
        token, raw = APIToken.issue(
            validated_data["user"],
            name=validated_data.get("name") or "api",
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            read_only=validated_data.get("read_only", False),
        )
        token.raw = raw
        return token


# ---------------------------------------------------------------------------
# Users and groups
# ---------------------------------------------------------------------------
class UserSerializer(serializers.ModelSerializer):
    password = SecretField(
        keep_when_blank=True, allow_blank=False, help_text="Write-only; checked by the password validators. Required on create."
    )
    groups = serializers.PrimaryKeyRelatedField(many=True, queryset=Group.objects.all(), required=False)

    class Meta:
        model = User
        fields = [
            "id", "username", "password", "email", "first_name", "last_name", "groups", "is_active", "is_staff",
            "is_superuser", "date_joined", "last_login",
        ]
        read_only_fields = ["is_superuser", "date_joined", "last_login"]

    def validate(self, attrs):
        password = attrs.get("password")
        if self.instance is None and not password:
            raise serializers.ValidationError({"password": ["This field is required."]})
        if password:
            # Validators such as UserAttributeSimilarityValidator compare with the user's fields.
            candidate = self.instance or User(**{k: v for k, v in attrs.items() if k not in ("password", "groups")})
            try:
                validate_password(password, candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs

    def create(self, validated_data):
        password = validated_data.pop("password")
        groups = validated_data.pop("groups", [])
        user = User(**validated_data)
        user.set_password(password)
        user.save()
        user.groups.set(groups)
        return user

    def update(self, instance, validated_data):
        password = validated_data.pop("password", None)
        user = super().update(instance, validated_data)
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user


class PermissionCodenameField(serializers.SlugRelatedField):
    """A model permission as "app_label.codename"."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="codename", queryset=Permission.objects.select_related("content_type"), **kwargs)

    def to_representation(self, obj):
        return f"{obj.content_type.app_label}.{obj.codename}"

    def to_internal_value(self, data):
        if not isinstance(data, str) or data.count(".") != 1:
            self.fail("invalid")
        app_label, codename = data.split(".")
        permission = self.get_queryset().filter(content_type__app_label=app_label, codename=codename).first()
        if permission is None:
            self.fail("does_not_exist", slug_name="permission", value=data)
        return permission


class GroupSerializer(serializers.ModelSerializer):
    permissions = PermissionCodenameField(many=True, required=False, help_text='Model permissions, as "app_label.codename"')
    user_count = serializers.SerializerMethodField()
    is_role = serializers.SerializerMethodField(help_text="One of the built-in roles (Administrators, Operators, Viewers)")

    class Meta:
        model = Group
        fields = ["id", "name", "permissions", "user_count", "is_role"]

    def get_user_count(self, obj) -> int:
        count = getattr(obj, "n_users", None)
        return obj.user_set.count() if count is None else count

    def get_is_role(self, obj) -> bool:
        return obj.name in role_names()

    def validate_name(self, value):
        if self.instance is not None and self.instance.name in role_names() and value != self.instance.name:
            raise serializers.ValidationError("The built-in roles cannot be renamed.")
        return value


# ---------------------------------------------------------------------------
# Audit log
# ---------------------------------------------------------------------------
class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id", "ts", "user", "username", "token_id", "ip", "source", "method", "path", "action", "object_type",
            "object_id", "object_repr", "changes", "status_code",
        ]
        read_only_fields = fields
