"""Researchers' projects, which group their code requests."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.api.deps import client_address, current_user, db_session, require
from datasite.contract.schemas import ProjectIn, ProjectOut
from datasite.db.models import Project, User
from datasite.errors import Conflict

router = APIRouter(prefix="/projects", tags=["projects"])


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        owner=project.owner.email,
        created_at=project.created_at,
    )


@router.post("", response_model=ProjectOut, status_code=201)
def create_project(
    body: ProjectIn,
    request: Request,
    user: User = Depends(require("researcher")),
    db: Session = Depends(db_session),
) -> ProjectOut:
    exists = db.scalar(
        select(Project.id).where(Project.owner_id == user.id, Project.name == body.name)
    )
    if exists is not None:
        raise Conflict(f"You have a project named {body.name!r} already.")
    project = Project(name=body.name, description=body.description, owner_id=user.id)
    db.add(project)
    db.flush()
    audit_log.record(
        db,
        "project_created",
        actor=user,
        address=client_address(request),
        target_type="project",
        target_id=project.id,
        name=project.name,
    )
    db.commit()
    return project_out(project)


@router.get("", response_model=list[ProjectOut])
def list_projects(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    query = select(Project).order_by(Project.id)
    if user.role == "researcher":
        query = query.where(Project.owner_id == user.id)
    return [project_out(p) for p in db.scalars(query)]
