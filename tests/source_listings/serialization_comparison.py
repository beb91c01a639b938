# Source: 1.4 モデルのシリアライゼーション — 「pickle / joblib」, serialization_comparison.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# serialization_comparison.py
import pickle
import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.datasets import load_iris

# モデル訓練
iris = load_iris()
model = RandomForestClassifier(n_estimators=100, random_state=42)
model.fit(iris.data, iris.target)

# pickle保存
with open('model_pickle.pkl', 'wb') as f:
    pickle.dump(model, f)

# joblib保存(より効率的)
joblib.dump(model, 'model_joblib.pkl')

# 読み込み
model_pickle = pickle.load(open('model_pickle.pkl', 'rb'))
model_joblib = joblib.load('model_joblib.pkl')

# ファイルサイズ比較
import os
print(f"pickle: {os.path.getsize('model_pickle.pkl')} bytes")
print(f"joblib: {os.path.getsize('model_joblib.pkl')} bytes")
# → joblibの方が効率的(特に大きなnumpy配列を含む場合)
