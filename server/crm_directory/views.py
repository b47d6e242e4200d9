"""Directory values -> protos."""

from __future__ import annotations

from renove.conexoes.v1 import crm_directory_service_pb2 as pb

from server.crm_directory.fields import MappableField
from server.crm_directory.pipelines import PipelineView


def pipeline(view: PipelineView) -> pb.CrmPipeline:
    return pb.CrmPipeline(
        id=str(view.id),
        nome=view.nome,
        ordem=view.ordem,
        etapas=[pb.CrmStage(id=str(i), nome=nome, ordem=ordem) for i, nome, ordem in view.etapas],
    )


def field(value: MappableField) -> pb.CrmField:
    return pb.CrmField(
        target=value.target,
        rotulo=value.rotulo,
        tipo=pb.CustomFieldType.Value("CUSTOM_FIELD_TYPE_" + value.tipo.upper()),
        custom=value.custom,
    )
