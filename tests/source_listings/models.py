# Source: 1.3 FastAPIによる高速推論 — 「Pydanticモデル定義」, models.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# models.py - Pydanticモデル定義
from pydantic import BaseModel, Field, validator
from typing import List

class IrisFeatures(BaseModel):
    """Iris特徴量の入力スキーマ"""
    features: List[float] = Field(
        ...,
        description="4つの特徴量 [sepal_length, sepal_width, petal_length, petal_width]",
        min_items=4,
        max_items=4
    )

    @validator('features')
    def check_positive(cls, v):
        """特徴量が正の値であることを検証"""
        if any(x < 0 for x in v):
            raise ValueError('すべての特徴量は正の値である必要があります')
        return v

class PredictionResponse(BaseModel):
    """予測結果のレスポンススキーマ"""
    prediction: str = Field(..., description="予測クラス名")
    class_id: int = Field(..., description="クラスID (0-2)")
    probabilities: dict = Field(..., description="各クラスの確率")

# 使用例
sample_input = IrisFeatures(features=[5.1, 3.5, 1.4, 0.2])
print(sample_input.json())
# → {"features": [5.1, 3.5, 1.4, 0.2]}
