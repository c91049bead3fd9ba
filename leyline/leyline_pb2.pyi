from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeedLifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEED_STAGE_UNKNOWN: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_DORMANT: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_GERMINATED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_TRAINING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_BLENDING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_SHADOWING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_PROBATIONARY: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_FOSSILIZED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_CULLED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_EMBARGOED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_RESETTING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_TERMINATED: _ClassVar[SeedLifecycleStage]

class SeedOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEED_OP_UNKNOWN: _ClassVar[SeedOperation]
    SEED_OP_GERMINATE: _ClassVar[SeedOperation]
    SEED_OP_ADVANCE: _ClassVar[SeedOperation]
    SEED_OP_CULL: _ClassVar[SeedOperation]
    SEED_OP_TERMINATE: _ClassVar[SeedOperation]

class CommandType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_TYPE_UNKNOWN: _ClassVar[CommandType]
    COMMAND_TYPE_SEED: _ClassVar[CommandType]
    COMMAND_TYPE_OPTIMIZER: _ClassVar[CommandType]
    COMMAND_TYPE_CIRCUIT_BREAKER: _ClassVar[CommandType]
    COMMAND_TYPE_ROLLBACK: _ClassVar[CommandType]
    COMMAND_TYPE_NOOP: _ClassVar[CommandType]

class MessagePriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_PRIORITY_UNKNOWN: _ClassVar[MessagePriority]
    MESSAGE_PRIORITY_LOW: _ClassVar[MessagePriority]
    MESSAGE_PRIORITY_NORMAL: _ClassVar[MessagePriority]
    MESSAGE_PRIORITY_HIGH: _ClassVar[MessagePriority]
    MESSAGE_PRIORITY_EMERGENCY: _ClassVar[MessagePriority]

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATUS_UNKNOWN: _ClassVar[HealthStatus]
    HEALTH_STATUS_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_STATUS_UNHEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_CRITICAL: _ClassVar[HealthStatus]

class FieldReportOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_REPORT_OUTCOME_UNKNOWN: _ClassVar[FieldReportOutcome]
    FIELD_REPORT_OUTCOME_SUCCESS: _ClassVar[FieldReportOutcome]
    FIELD_REPORT_OUTCOME_NEUTRAL: _ClassVar[FieldReportOutcome]
    FIELD_REPORT_OUTCOME_REGRESSION: _ClassVar[FieldReportOutcome]
    FIELD_REPORT_OUTCOME_ABORTED: _ClassVar[FieldReportOutcome]

class RiskLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_LEVEL_UNKNOWN: _ClassVar[RiskLevel]
    RISK_LEVEL_GREEN: _ClassVar[RiskLevel]
    RISK_LEVEL_YELLOW: _ClassVar[RiskLevel]
    RISK_LEVEL_ORANGE: _ClassVar[RiskLevel]
    RISK_LEVEL_RED: _ClassVar[RiskLevel]
    RISK_LEVEL_CRITICAL: _ClassVar[RiskLevel]

class BlueprintTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLUEPRINT_TIER_UNKNOWN: _ClassVar[BlueprintTier]
    BLUEPRINT_TIER_SAFE: _ClassVar[BlueprintTier]
    BLUEPRINT_TIER_EXPERIMENTAL: _ClassVar[BlueprintTier]
    BLUEPRINT_TIER_ADVERSARIAL: _ClassVar[BlueprintTier]

class SlotKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_KIND_UNKNOWN: _ClassVar[SlotKind]
    SLOT_KIND_CONV2D: _ClassVar[SlotKind]
    SLOT_KIND_SEQUENCE: _ClassVar[SlotKind]
    SLOT_KIND_WIDEN: _ClassVar[SlotKind]

class RollbackMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLBACK_MODE_UNKNOWN: _ClassVar[RollbackMode]
    ROLLBACK_MODE_FAST: _ClassVar[RollbackMode]
    ROLLBACK_MODE_FULL: _ClassVar[RollbackMode]
SEED_STAGE_UNKNOWN: SeedLifecycleStage
SEED_STAGE_DORMANT: SeedLifecycleStage
SEED_STAGE_GERMINATED: SeedLifecycleStage
SEED_STAGE_TRAINING: SeedLifecycleStage
SEED_STAGE_BLENDING: SeedLifecycleStage
SEED_STAGE_SHADOWING: SeedLifecycleStage
SEED_STAGE_PROBATIONARY: SeedLifecycleStage
SEED_STAGE_FOSSILIZED: SeedLifecycleStage
SEED_STAGE_CULLED: SeedLifecycleStage
SEED_STAGE_EMBARGOED: SeedLifecycleStage
SEED_STAGE_RESETTING: SeedLifecycleStage
SEED_STAGE_TERMINATED: SeedLifecycleStage
SEED_OP_UNKNOWN: SeedOperation
SEED_OP_GERMINATE: SeedOperation
SEED_OP_ADVANCE: SeedOperation
SEED_OP_CULL: SeedOperation
SEED_OP_TERMINATE: SeedOperation
COMMAND_TYPE_UNKNOWN: CommandType
COMMAND_TYPE_SEED: CommandType
COMMAND_TYPE_OPTIMIZER: CommandType
COMMAND_TYPE_CIRCUIT_BREAKER: CommandType
COMMAND_TYPE_ROLLBACK: CommandType
COMMAND_TYPE_NOOP: CommandType
MESSAGE_PRIORITY_UNKNOWN: MessagePriority
MESSAGE_PRIORITY_LOW: MessagePriority
MESSAGE_PRIORITY_NORMAL: MessagePriority
MESSAGE_PRIORITY_HIGH: MessagePriority
MESSAGE_PRIORITY_EMERGENCY: MessagePriority
HEALTH_STATUS_UNKNOWN: HealthStatus
HEALTH_STATUS_HEALTHY: HealthStatus
HEALTH_STATUS_DEGRADED: HealthStatus
HEALTH_STATUS_UNHEALTHY: HealthStatus
HEALTH_STATUS_CRITICAL: HealthStatus
FIELD_REPORT_OUTCOME_UNKNOWN: FieldReportOutcome
FIELD_REPORT_OUTCOME_SUCCESS: FieldReportOutcome
FIELD_REPORT_OUTCOME_NEUTRAL: FieldReportOutcome
FIELD_REPORT_OUTCOME_REGRESSION: FieldReportOutcome
FIELD_REPORT_OUTCOME_ABORTED: FieldReportOutcome
RISK_LEVEL_UNKNOWN: RiskLevel
RISK_LEVEL_GREEN: RiskLevel
RISK_LEVEL_YELLOW: RiskLevel
RISK_LEVEL_ORANGE: RiskLevel
RISK_LEVEL_RED: RiskLevel
RISK_LEVEL_CRITICAL: RiskLevel
BLUEPRINT_TIER_UNKNOWN: BlueprintTier
BLUEPRINT_TIER_SAFE: BlueprintTier
BLUEPRINT_TIER_EXPERIMENTAL: BlueprintTier
BLUEPRINT_TIER_ADVERSARIAL: BlueprintTier
SLOT_KIND_UNKNOWN: SlotKind
SLOT_KIND_CONV2D: SlotKind
SLOT_KIND_SEQUENCE: SlotKind
SLOT_KIND_WIDEN: SlotKind
ROLLBACK_MODE_UNKNOWN: RollbackMode
ROLLBACK_MODE_FAST: RollbackMode
ROLLBACK_MODE_FULL: RollbackMode

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "event_type", "stream", "stream_version", "global_position", "schema_version", "occurred_at_ns", "run_id", "epoch", "correlation_id", "causation_id", "source", "payload", "key_id", "nonce", "hmac", "priority")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_POSITION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CAUSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    HMAC_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    stream: str
    stream_version: int
    global_position: int
    schema_version: int
    occurred_at_ns: int
    run_id: str
    epoch: int
    correlation_id: str
    causation_id: str
    source: str
    payload: bytes
    key_id: str
    nonce: bytes
    hmac: bytes
    priority: MessagePriority
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., stream: _Optional[str] = ..., stream_version: _Optional[int] = ..., global_position: _Optional[int] = ..., schema_version: _Optional[int] = ..., occurred_at_ns: _Optional[int] = ..., run_id: _Optional[str] = ..., epoch: _Optional[int] = ..., correlation_id: _Optional[str] = ..., causation_id: _Optional[str] = ..., source: _Optional[str] = ..., payload: _Optional[bytes] = ..., key_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., hmac: _Optional[bytes] = ..., priority: _Optional[_Union[MessagePriority, str]] = ...) -> None: ...

class HardwareContext(_message.Message):
    __slots__ = ("device", "memory_used_gb", "memory_total_gb", "utilization", "device_count")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_GB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_GB_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    device: str
    memory_used_gb: float
    memory_total_gb: float
    utilization: float
    device_count: int
    def __init__(self, device: _Optional[str] = ..., memory_used_gb: _Optional[float] = ..., memory_total_gb: _Optional[float] = ..., utilization: _Optional[float] = ..., device_count: _Optional[int] = ...) -> None: ...

class SeedState(_message.Message):
    __slots__ = ("slot", "seed_id", "stage", "blueprint_id", "alpha", "gradient_norm", "age_epochs", "risk", "metrics", "outcome_reason")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    AGE_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_REASON_FIELD_NUMBER: _ClassVar[int]
    slot: int
    seed_id: int
    stage: SeedLifecycleStage
    blueprint_id: str
    alpha: float
    gradient_norm: float
    age_epochs: int
    risk: float
    metrics: _containers.ScalarMap[str, float]
    outcome_reason: str
    def __init__(self, slot: _Optional[int] = ..., seed_id: _Optional[int] = ..., stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., blueprint_id: _Optional[str] = ..., alpha: _Optional[float] = ..., gradient_norm: _Optional[float] = ..., age_epochs: _Optional[int] = ..., risk: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., outcome_reason: _Optional[str] = ...) -> None: ...

class SystemStatePacket(_message.Message):
    __slots__ = ("epoch", "global_step", "training_loss", "training_accuracy", "validation_loss", "validation_accuracy", "metrics", "seeds", "hardware", "run_id", "packet_id")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_STEP_FIELD_NUMBER: _ClassVar[int]
    TRAINING_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    global_step: int
    training_loss: float
    training_accuracy: float
    validation_loss: float
    validation_accuracy: float
    metrics: _containers.ScalarMap[str, float]
    seeds: _containers.RepeatedCompositeFieldContainer[SeedState]
    hardware: HardwareContext
    run_id: str
    packet_id: int
    def __init__(self, epoch: _Optional[int] = ..., global_step: _Optional[int] = ..., training_loss: _Optional[float] = ..., training_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., seeds: _Optional[_Iterable[_Union[SeedState, _Mapping]]] = ..., hardware: _Optional[_Union[HardwareContext, _Mapping]] = ..., run_id: _Optional[str] = ..., packet_id: _Optional[int] = ...) -> None: ...

class SeedOperationCommand(_message.Message):
    __slots__ = ("operation", "blueprint_id", "parameters", "alpha_ramp_epochs")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ALPHA_RAMP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    operation: SeedOperation
    blueprint_id: str
    parameters: _containers.ScalarMap[str, float]
    alpha_ramp_epochs: int
    def __init__(self, operation: _Optional[_Union[SeedOperation, str]] = ..., blueprint_id: _Optional[str] = ..., parameters: _Optional[_Mapping[str, float]] = ..., alpha_ramp_epochs: _Optional[int] = ...) -> None: ...

class OptimizerAdjustment(_message.Message):
    __slots__ = ("param_group", "learning_rate", "weight_decay", "momentum")
    PARAM_GROUP_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    param_group: str
    learning_rate: float
    weight_decay: float
    momentum: float
    def __init__(self, param_group: _Optional[str] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., momentum: _Optional[float] = ...) -> None: ...

class CircuitBreakerCommand(_message.Message):
    __slots__ = ("breaker", "open", "reason")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    breaker: str
    open: bool
    reason: str
    def __init__(self, breaker: _Optional[str] = ..., open: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackCommand(_message.Message):
    __slots__ = ("target_epoch", "mode", "reason")
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target_epoch: int
    mode: RollbackMode
    reason: str
    def __init__(self, target_epoch: _Optional[int] = ..., mode: _Optional[_Union[RollbackMode, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class AdaptationCommand(_message.Message):
    __slots__ = ("command_id", "command_type", "target_seed_id", "target_slot", "seed_operation", "optimizer_adjustment", "circuit_breaker", "rollback", "execution_deadline_ms", "issued_by", "policy_version", "annotations", "issued_at_ms")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SEED_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_OPERATION_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ADJUSTMENT_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    command_type: CommandType
    target_seed_id: int
    target_slot: int
    seed_operation: SeedOperationCommand
    optimizer_adjustment: OptimizerAdjustment
    circuit_breaker: CircuitBreakerCommand
    rollback: RollbackCommand
    execution_deadline_ms: int
    issued_by: str
    policy_version: str
    annotations: _containers.ScalarMap[str, str]
    issued_at_ms: int
    def __init__(self, command_id: _Optional[str] = ..., command_type: _Optional[_Union[CommandType, str]] = ..., target_seed_id: _Optional[int] = ..., target_slot: _Optional[int] = ..., seed_operation: _Optional[_Union[SeedOperationCommand, _Mapping]] = ..., optimizer_adjustment: _Optional[_Union[OptimizerAdjustment, _Mapping]] = ..., circuit_breaker: _Optional[_Union[CircuitBreakerCommand, _Mapping]] = ..., rollback: _Optional[_Union[RollbackCommand, _Mapping]] = ..., execution_deadline_ms: _Optional[int] = ..., issued_by: _Optional[str] = ..., policy_version: _Optional[str] = ..., annotations: _Optional[_Mapping[str, str]] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class FieldReport(_message.Message):
    __slots__ = ("report_id", "command_id", "run_id", "seed_id", "slot", "blueprint_id", "outcome", "delta_accuracy", "delta_loss", "delta_parameters", "policy_version", "risk_at_decision", "start_epoch", "end_epoch", "metrics", "seed_stage", "seed_reason")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DELTA_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DELTA_LOSS_FIELD_NUMBER: _ClassVar[int]
    DELTA_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RISK_AT_DECISION_FIELD_NUMBER: _ClassVar[int]
    START_EPOCH_FIELD_NUMBER: _ClassVar[int]
    END_EPOCH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SEED_STAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_REASON_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    command_id: str
    run_id: str
    seed_id: int
    slot: int
    blueprint_id: str
    outcome: FieldReportOutcome
    delta_accuracy: float
    delta_loss: float
    delta_parameters: int
    policy_version: str
    risk_at_decision: RiskLevel
    start_epoch: int
    end_epoch: int
    metrics: _containers.ScalarMap[str, float]
    seed_stage: SeedLifecycleStage
    seed_reason: str
    def __init__(self, report_id: _Optional[str] = ..., command_id: _Optional[str] = ..., run_id: _Optional[str] = ..., seed_id: _Optional[int] = ..., slot: _Optional[int] = ..., blueprint_id: _Optional[str] = ..., outcome: _Optional[_Union[FieldReportOutcome, str]] = ..., delta_accuracy: _Optional[float] = ..., delta_loss: _Optional[float] = ..., delta_parameters: _Optional[int] = ..., policy_version: _Optional[str] = ..., risk_at_decision: _Optional[_Union[RiskLevel, str]] = ..., start_epoch: _Optional[int] = ..., end_epoch: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., seed_stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., seed_reason: _Optional[str] = ...) -> None: ...

class PolicyUpdate(_message.Message):
    __slots__ = ("version", "policy_name", "content_hash", "parent_version", "artifact_path", "created_at_ms", "training_metrics", "lora")
    class TrainingMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_METRICS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    version: str
    policy_name: str
    content_hash: str
    parent_version: str
    artifact_path: str
    created_at_ms: int
    training_metrics: _containers.ScalarMap[str, float]
    lora: bool
    def __init__(self, version: _Optional[str] = ..., policy_name: _Optional[str] = ..., content_hash: _Optional[str] = ..., parent_version: _Optional[str] = ..., artifact_path: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., training_metrics: _Optional[_Mapping[str, float]] = ..., lora: _Optional[bool] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("name", "value", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TelemetryEvent(_message.Message):
    __slots__ = ("name", "severity", "message", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    severity: MessagePriority
    message: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., severity: _Optional[_Union[MessagePriority, str]] = ..., message: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("name", "start_ns", "duration_ns", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    start_ns: int
    duration_ns: int
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., start_ns: _Optional[int] = ..., duration_ns: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TelemetryPacket(_message.Message):
    __slots__ = ("packet_id", "source", "timestamp_ms", "metrics", "events", "spans", "health", "priority")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    packet_id: bytes
    source: str
    timestamp_ms: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    events: _containers.RepeatedCompositeFieldContainer[TelemetryEvent]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    health: HealthStatus
    priority: MessagePriority
    def __init__(self, packet_id: _Optional[bytes] = ..., source: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[TelemetryEvent, _Mapping]]] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., health: _Optional[_Union[HealthStatus, str]] = ..., priority: _Optional[_Union[MessagePriority, str]] = ...) -> None: ...

class ParameterRange(_message.Message):
    __slots__ = ("min", "max", "default", "integer")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    default: float
    integer: bool
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., default: _Optional[float] = ..., integer: _Optional[bool] = ...) -> None: ...

class BlueprintDescriptor(_message.Message):
    __slots__ = ("blueprint_id", "name", "tier", "risk", "curriculum_stage", "slot_kinds", "parameter_ranges", "requires_approval", "approved", "quarantine_only", "description", "conservative_pool")
    class ParameterRangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterRange, _Mapping]] = ...) -> None: ...
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    CURRICULUM_STAGE_FIELD_NUMBER: _ClassVar[int]
    SLOT_KINDS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_RANGES_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_ONLY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_POOL_FIELD_NUMBER: _ClassVar[int]
    blueprint_id: str
    name: str
    tier: BlueprintTier
    risk: float
    curriculum_stage: int
    slot_kinds: _containers.RepeatedScalarFieldContainer[SlotKind]
    parameter_ranges: _containers.MessageMap[str, ParameterRange]
    requires_approval: bool
    approved: bool
    quarantine_only: bool
    description: str
    conservative_pool: bool
    def __init__(self, blueprint_id: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[_Union[BlueprintTier, str]] = ..., risk: _Optional[float] = ..., curriculum_stage: _Optional[int] = ..., slot_kinds: _Optional[_Iterable[_Union[SlotKind, str]]] = ..., parameter_ranges: _Optional[_Mapping[str, ParameterRange]] = ..., requires_approval: _Optional[bool] = ..., approved: _Optional[bool] = ..., quarantine_only: _Optional[bool] = ..., description: _Optional[str] = ..., conservative_pool: _Optional[bool] = ...) -> None: ...

class CheckpointManifest(_message.Message):
    __slots__ = ("run_id", "epoch", "content_hash", "components", "log_position", "created_at_ms", "size_bytes", "path")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    LOG_POSITION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    epoch: int
    content_hash: str
    components: _containers.RepeatedScalarFieldContainer[str]
    log_position: int
    created_at_ms: int
    size_bytes: int
    path: str
    def __init__(self, run_id: _Optional[str] = ..., epoch: _Optional[int] = ..., content_hash: _Optional[str] = ..., components: _Optional[_Iterable[str]] = ..., log_position: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., size_bytes: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("run_id", "config_json", "seed", "host_model", "dataset", "code_version", "device", "resumed", "lifecycle", "controller_config_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HOST_MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    config_json: str
    seed: int
    host_model: str
    dataset: str
    code_version: str
    device: str
    resumed: bool
    lifecycle: LifecycleConfig
    controller_config_json: str
    def __init__(self, run_id: _Optional[str] = ..., config_json: _Optional[str] = ..., seed: _Optional[int] = ..., host_model: _Optional[str] = ..., dataset: _Optional[str] = ..., code_version: _Optional[str] = ..., device: _Optional[str] = ..., resumed: _Optional[bool] = ..., lifecycle: _Optional[_Union[LifecycleConfig, _Mapping]] = ..., controller_config_json: _Optional[str] = ...) -> None: ...

class LifecycleConfig(_message.Message):
    __slots__ = ("min_training_epochs", "max_training_epochs", "alpha_ramp_epochs", "probation_epochs", "embargo_epochs", "max_training_seeds", "max_isolation_violations", "max_grad_norm", "host_loss_tolerance", "shadow_tolerance", "min_contribution", "probation_extension_epochs")
    MIN_TRAINING_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRAINING_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    ALPHA_RAMP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PROBATION_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRAINING_SEEDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ISOLATION_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    HOST_LOSS_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PROBATION_EXTENSION_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    min_training_epochs: int
    max_training_epochs: int
    alpha_ramp_epochs: int
    probation_epochs: int
    embargo_epochs: int
    max_training_seeds: int
    max_isolation_violations: int
    max_grad_norm: float
    host_loss_tolerance: float
    shadow_tolerance: float
    min_contribution: float
    probation_extension_epochs: int
    def __init__(self, min_training_epochs: _Optional[int] = ..., max_training_epochs: _Optional[int] = ..., alpha_ramp_epochs: _Optional[int] = ..., probation_epochs: _Optional[int] = ..., embargo_epochs: _Optional[int] = ..., max_training_seeds: _Optional[int] = ..., max_isolation_violations: _Optional[int] = ..., max_grad_norm: _Optional[float] = ..., host_loss_tolerance: _Optional[float] = ..., shadow_tolerance: _Optional[float] = ..., min_contribution: _Optional[float] = ..., probation_extension_epochs: _Optional[int] = ...) -> None: ...

class EpochCompleted(_message.Message):
    __slots__ = ("state", "epoch_wall_ms", "test_accuracy", "parameters")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_WALL_MS_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    state: SystemStatePacket
    epoch_wall_ms: float
    test_accuracy: float
    parameters: int
    def __init__(self, state: _Optional[_Union[SystemStatePacket, _Mapping]] = ..., epoch_wall_ms: _Optional[float] = ..., test_accuracy: _Optional[float] = ..., parameters: _Optional[int] = ...) -> None: ...

class EpochHookTimed(_message.Message):
    __slots__ = ("epoch", "assembly_ms", "controller_ms", "command_ms", "guard_ms", "total_ms", "overrun", "budget_ms")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ASSEMBLY_MS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_MS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_MS_FIELD_NUMBER: _ClassVar[int]
    GUARD_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_FIELD_NUMBER: _ClassVar[int]
    BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    assembly_ms: float
    controller_ms: float
    command_ms: float
    guard_ms: float
    total_ms: float
    overrun: bool
    budget_ms: float
    def __init__(self, epoch: _Optional[int] = ..., assembly_ms: _Optional[float] = ..., controller_ms: _Optional[float] = ..., command_ms: _Optional[float] = ..., guard_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., overrun: _Optional[bool] = ..., budget_ms: _Optional[float] = ...) -> None: ...

class CheckpointCommitted(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: CheckpointManifest
    def __init__(self, manifest: _Optional[_Union[CheckpointManifest, _Mapping]] = ...) -> None: ...

class RollbackRequested(_message.Message):
    __slots__ = ("run_id", "target_epoch", "mode", "reason", "requested_by")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    target_epoch: int
    mode: RollbackMode
    reason: str
    requested_by: str
    def __init__(self, run_id: _Optional[str] = ..., target_epoch: _Optional[int] = ..., mode: _Optional[_Union[RollbackMode, str]] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class RollbackCompleted(_message.Message):
    __slots__ = ("run_id", "target_epoch", "target_position", "checkpoint_hash", "mode", "duration_ms", "superseded_from", "superseded_to")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_POSITION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_HASH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FROM_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_TO_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    target_epoch: int
    target_position: int
    checkpoint_hash: str
    mode: RollbackMode
    duration_ms: float
    superseded_from: int
    superseded_to: int
    def __init__(self, run_id: _Optional[str] = ..., target_epoch: _Optional[int] = ..., target_position: _Optional[int] = ..., checkpoint_hash: _Optional[str] = ..., mode: _Optional[_Union[RollbackMode, str]] = ..., duration_ms: _Optional[float] = ..., superseded_from: _Optional[int] = ..., superseded_to: _Optional[int] = ...) -> None: ...

class RunCompleted(_message.Message):
    __slots__ = ("run_id", "epochs", "test_accuracy", "parameters", "model_sha256")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    epochs: int
    test_accuracy: float
    parameters: int
    model_sha256: str
    def __init__(self, run_id: _Optional[str] = ..., epochs: _Optional[int] = ..., test_accuracy: _Optional[float] = ..., parameters: _Optional[int] = ..., model_sha256: _Optional[str] = ...) -> None: ...

class RunFailed(_message.Message):
    __slots__ = ("run_id", "error", "epoch", "rank")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    error: str
    epoch: int
    rank: int
    def __init__(self, run_id: _Optional[str] = ..., error: _Optional[str] = ..., epoch: _Optional[int] = ..., rank: _Optional[int] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("gate", "passed", "reason", "measured")
    class MeasuredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    GATE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    gate: str
    passed: bool
    reason: str
    measured: _containers.ScalarMap[str, float]
    def __init__(self, gate: _Optional[str] = ..., passed: _Optional[bool] = ..., reason: _Optional[str] = ..., measured: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SeedTransitioned(_message.Message):
    __slots__ = ("slot", "seed_id", "from_stage", "to_stage", "gates", "command_id", "reason", "epoch", "blueprint_id", "embargo_until_epoch")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_EPOCH_FIELD_NUMBER: _ClassVar[int]
    slot: int
    seed_id: int
    from_stage: SeedLifecycleStage
    to_stage: SeedLifecycleStage
    gates: _containers.RepeatedCompositeFieldContainer[GateResult]
    command_id: str
    reason: str
    epoch: int
    blueprint_id: str
    embargo_until_epoch: int
    def __init__(self, slot: _Optional[int] = ..., seed_id: _Optional[int] = ..., from_stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., to_stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., gates: _Optional[_Iterable[_Union[GateResult, _Mapping]]] = ..., command_id: _Optional[str] = ..., reason: _Optional[str] = ..., epoch: _Optional[int] = ..., blueprint_id: _Optional[str] = ..., embargo_until_epoch: _Optional[int] = ...) -> None: ...

class SeedGrafted(_message.Message):
    __slots__ = ("slot", "seed_id", "blueprint_id", "artifact_hash", "parameters", "latency_ms", "command_id", "alpha_ramp_epochs")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_HASH_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ALPHA_RAMP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    seed_id: int
    blueprint_id: str
    artifact_hash: str
    parameters: int
    latency_ms: float
    command_id: str
    alpha_ramp_epochs: int
    def __init__(self, slot: _Optional[int] = ..., seed_id: _Optional[int] = ..., blueprint_id: _Optional[str] = ..., artifact_hash: _Optional[str] = ..., parameters: _Optional[int] = ..., latency_ms: _Optional[float] = ..., command_id: _Optional[str] = ..., alpha_ramp_epochs: _Optional[int] = ...) -> None: ...

class IsolationViolationDetected(_message.Message):
    __slots__ = ("slot", "seed_id", "violation_count", "parameter", "gradient_norm", "epoch")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    slot: int
    seed_id: int
    violation_count: int
    parameter: str
    gradient_norm: float
    epoch: int
    def __init__(self, slot: _Optional[int] = ..., seed_id: _Optional[int] = ..., violation_count: _Optional[int] = ..., parameter: _Optional[str] = ..., gradient_norm: _Optional[float] = ..., epoch: _Optional[int] = ...) -> None: ...

class SeedGradientsMeasured(_message.Message):
    __slots__ = ("slot", "seed_id", "epoch", "stage", "epochs_since_germination", "steps", "seed_gradient_norm", "host_gradient_norm", "seed_parameters", "host_parameters", "seed_norm_per_parameter", "host_norm_per_parameter")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_SINCE_GERMINATION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    HOST_GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    SEED_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    HOST_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SEED_NORM_PER_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    HOST_NORM_PER_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    slot: int
    seed_id: int
    epoch: int
    stage: SeedLifecycleStage
    epochs_since_germination: int
    steps: int
    seed_gradient_norm: float
    host_gradient_norm: float
    seed_parameters: int
    host_parameters: int
    seed_norm_per_parameter: float
    host_norm_per_parameter: float
    def __init__(self, slot: _Optional[int] = ..., seed_id: _Optional[int] = ..., epoch: _Optional[int] = ..., stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., epochs_since_germination: _Optional[int] = ..., steps: _Optional[int] = ..., seed_gradient_norm: _Optional[float] = ..., host_gradient_norm: _Optional[float] = ..., seed_parameters: _Optional[int] = ..., host_parameters: _Optional[int] = ..., seed_norm_per_parameter: _Optional[float] = ..., host_norm_per_parameter: _Optional[float] = ...) -> None: ...

class CommandRejected(_message.Message):
    __slots__ = ("command_id", "reason", "code", "slot", "stage")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    reason: str
    code: str
    slot: int
    stage: SeedLifecycleStage
    def __init__(self, command_id: _Optional[str] = ..., reason: _Optional[str] = ..., code: _Optional[str] = ..., slot: _Optional[int] = ..., stage: _Optional[_Union[SeedLifecycleStage, str]] = ...) -> None: ...

class BlueprintRegistered(_message.Message):
    __slots__ = ("descriptor",)
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    descriptor: BlueprintDescriptor
    def __init__(self, descriptor: _Optional[_Union[BlueprintDescriptor, _Mapping]] = ...) -> None: ...

class BlueprintApproved(_message.Message):
    __slots__ = ("blueprint_id", "approved_by", "reason")
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    blueprint_id: str
    approved_by: str
    reason: str
    def __init__(self, blueprint_id: _Optional[str] = ..., approved_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CompileJobQueued(_message.Message):
    __slots__ = ("job_id", "blueprint_id", "parameters", "slot_shape", "slot_kind", "strategy", "max_attempts")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SLOT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    SLOT_KIND_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    blueprint_id: str
    parameters: _containers.ScalarMap[str, float]
    slot_shape: _containers.RepeatedScalarFieldContainer[int]
    slot_kind: SlotKind
    strategy: str
    max_attempts: int
    def __init__(self, job_id: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., parameters: _Optional[_Mapping[str, float]] = ..., slot_shape: _Optional[_Iterable[int]] = ..., slot_kind: _Optional[_Union[SlotKind, str]] = ..., strategy: _Optional[str] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class CompileJobStarted(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class CompileJobFailed(_message.Message):
    __slots__ = ("job_id", "attempt", "error", "will_retry", "retry_after_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    error: str
    will_retry: bool
    retry_after_ms: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., error: _Optional[str] = ..., will_retry: _Optional[bool] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class CompileJobSucceeded(_message.Message):
    __slots__ = ("job_id", "attempt", "artifact_hash", "duration_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_HASH_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    artifact_hash: str
    duration_ms: float
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., artifact_hash: _Optional[str] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class ArtifactStored(_message.Message):
    __slots__ = ("artifact_hash", "blueprint_id", "size_bytes", "strategy", "slot_shape", "job_id")
    ARTIFACT_HASH_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SLOT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    artifact_hash: str
    blueprint_id: str
    size_bytes: int
    strategy: str
    slot_shape: _containers.RepeatedScalarFieldContainer[int]
    job_id: str
    def __init__(self, artifact_hash: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., strategy: _Optional[str] = ..., slot_shape: _Optional[_Iterable[int]] = ..., job_id: _Optional[str] = ...) -> None: ...

class ArtifactCorrupted(_message.Message):
    __slots__ = ("artifact_hash", "blueprint_id", "actual_hash", "error")
    ARTIFACT_HASH_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_HASH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    artifact_hash: str
    blueprint_id: str
    actual_hash: str
    error: str
    def __init__(self, artifact_hash: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., actual_hash: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class DecisionMade(_message.Message):
    __slots__ = ("policy_name", "policy_version", "inputs_summary", "risk_level", "latency_ms", "command_id", "action", "conservative", "reason", "packet_id", "applied_command_ids", "epoch", "action_probability", "factored_action", "observation")
    class InputsSummaryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RISK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    FACTORED_ACTION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    policy_name: str
    policy_version: str
    inputs_summary: _containers.ScalarMap[str, float]
    risk_level: RiskLevel
    latency_ms: float
    command_id: str
    action: str
    conservative: bool
    reason: str
    packet_id: int
    applied_command_ids: _containers.RepeatedScalarFieldContainer[str]
    epoch: int
    action_probability: float
    factored_action: FactoredAction
    observation: PolicyObservation
    def __init__(self, policy_name: _Optional[str] = ..., policy_version: _Optional[str] = ..., inputs_summary: _Optional[_Mapping[str, float]] = ..., risk_level: _Optional[_Union[RiskLevel, str]] = ..., latency_ms: _Optional[float] = ..., command_id: _Optional[str] = ..., action: _Optional[str] = ..., conservative: _Optional[bool] = ..., reason: _Optional[str] = ..., packet_id: _Optional[int] = ..., applied_command_ids: _Optional[_Iterable[str]] = ..., epoch: _Optional[int] = ..., action_probability: _Optional[float] = ..., factored_action: _Optional[_Union[FactoredAction, _Mapping]] = ..., observation: _Optional[_Union[PolicyObservation, _Mapping]] = ...) -> None: ...

class AdaptationCommandIssued(_message.Message):
    __slots__ = ("command", "decision_event_id")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DECISION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    command: AdaptationCommand
    decision_event_id: str
    def __init__(self, command: _Optional[_Union[AdaptationCommand, _Mapping]] = ..., decision_event_id: _Optional[str] = ...) -> None: ...

class ConservativeModeChanged(_message.Message):
    __slots__ = ("active", "reason", "risk_level", "epoch")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RISK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    active: bool
    reason: str
    risk_level: RiskLevel
    epoch: int
    def __init__(self, active: _Optional[bool] = ..., reason: _Optional[str] = ..., risk_level: _Optional[_Union[RiskLevel, str]] = ..., epoch: _Optional[int] = ...) -> None: ...

class FieldReportIssued(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: FieldReport
    def __init__(self, report: _Optional[_Union[FieldReport, _Mapping]] = ...) -> None: ...

class PolicyTrained(_message.Message):
    __slots__ = ("update", "steps", "experiences")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EXPERIENCES_FIELD_NUMBER: _ClassVar[int]
    update: PolicyUpdate
    steps: int
    experiences: int
    def __init__(self, update: _Optional[_Union[PolicyUpdate, _Mapping]] = ..., steps: _Optional[int] = ..., experiences: _Optional[int] = ...) -> None: ...

class PolicyValidation(_message.Message):
    __slots__ = ("version", "passed", "checks", "reason")
    class ChecksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    passed: bool
    checks: _containers.ScalarMap[str, float]
    reason: str
    def __init__(self, version: _Optional[str] = ..., passed: _Optional[bool] = ..., checks: _Optional[_Mapping[str, float]] = ..., reason: _Optional[str] = ...) -> None: ...

class PolicyPublished(_message.Message):
    __slots__ = ("update",)
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    update: PolicyUpdate
    def __init__(self, update: _Optional[_Union[PolicyUpdate, _Mapping]] = ...) -> None: ...

class PolicyActivation(_message.Message):
    __slots__ = ("version", "previous_version", "reason", "epoch")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    version: str
    previous_version: str
    reason: str
    epoch: int
    def __init__(self, version: _Optional[str] = ..., previous_version: _Optional[str] = ..., reason: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("name", "severity", "summary", "labels", "value")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    severity: str
    summary: str
    labels: _containers.ScalarMap[str, str]
    value: float
    def __init__(self, name: _Optional[str] = ..., severity: _Optional[str] = ..., summary: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ...) -> None: ...

class HostLayer(_message.Message):
    __slots__ = ("name", "kind", "parameter_sizes", "parameter_ranks", "output_shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SIZES_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_RANKS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    parameter_sizes: _containers.RepeatedScalarFieldContainer[int]
    parameter_ranks: _containers.RepeatedScalarFieldContainer[int]
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., parameter_sizes: _Optional[_Iterable[int]] = ..., parameter_ranks: _Optional[_Iterable[int]] = ..., output_shape: _Optional[_Iterable[int]] = ...) -> None: ...

class HostSlot(_message.Message):
    __slots__ = ("slot", "kind", "shape", "after_layer")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    AFTER_LAYER_FIELD_NUMBER: _ClassVar[int]
    slot: int
    kind: SlotKind
    shape: _containers.RepeatedScalarFieldContainer[int]
    after_layer: int
    def __init__(self, slot: _Optional[int] = ..., kind: _Optional[_Union[SlotKind, str]] = ..., shape: _Optional[_Iterable[int]] = ..., after_layer: _Optional[int] = ...) -> None: ...

class HostTopology(_message.Message):
    __slots__ = ("layers", "slots")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[HostLayer]
    slots: _containers.RepeatedCompositeFieldContainer[HostSlot]
    def __init__(self, layers: _Optional[_Iterable[_Union[HostLayer, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[HostSlot, _Mapping]]] = ...) -> None: ...

class PolicyObservation(_message.Message):
    __slots__ = ("packet", "topology", "parameters", "risk_level", "conservative", "catalogue", "legal", "embargoed_slots", "slot_costs")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RISK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_FIELD_NUMBER: _ClassVar[int]
    EMBARGOED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_COSTS_FIELD_NUMBER: _ClassVar[int]
    packet: SystemStatePacket
    topology: HostTopology
    parameters: int
    risk_level: int
    conservative: bool
    catalogue: _containers.RepeatedScalarFieldContainer[str]
    legal: bytes
    embargoed_slots: _containers.RepeatedScalarFieldContainer[int]
    slot_costs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, packet: _Optional[_Union[SystemStatePacket, _Mapping]] = ..., topology: _Optional[_Union[HostTopology, _Mapping]] = ..., parameters: _Optional[int] = ..., risk_level: _Optional[int] = ..., conservative: _Optional[bool] = ..., catalogue: _Optional[_Iterable[str]] = ..., legal: _Optional[bytes] = ..., embargoed_slots: _Optional[_Iterable[int]] = ..., slot_costs: _Optional[_Iterable[int]] = ...) -> None: ...

class FactoredAction(_message.Message):
    __slots__ = ("operation", "slot", "blueprint_id")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    operation: str
    slot: int
    blueprint_id: str
    def __init__(self, operation: _Optional[str] = ..., slot: _Optional[int] = ..., blueprint_id: _Optional[str] = ...) -> None: ...
